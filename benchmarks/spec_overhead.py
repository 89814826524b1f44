"""Spec runner overhead: a 50-node chain and a 50-way fan-out, run through the spec runner and
as the same flows hand-written with nodes, alternating, in one process.

    python -m benchmarks.spec_overhead [--quick]

Prints per-shape medians, ``per_node_overhead_ms`` and, last, ``spec_overhead_ratio`` (median
spec time / median hand-written time over both shapes; goal <= 1.10).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks._prefect import prefect_server

NODES = 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    args = parser.parse_args()
    rounds = 2 if args.quick else 5

    with prefect_server():
        from prefect import flow

        from flows.spec.model import WorkflowSpec
        from flows.spec_runner import build_flow
        from nodes.transform import TransformInput, transform

        chain = WorkflowSpec.model_validate(
            {
                "name": "bench-chain",
                "nodes": [
                    {
                        "id": f"n{i}",
                        "node": "transform",
                        "params": {
                            "data": {"v": i}
                            if i == 0
                            else "{{ nodes.n" + str(i - 1) + ".output.value }}",
                            "expression": "v" if i == 0 else "@",
                        },
                    }
                    for i in range(NODES)
                ],
                "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(NODES - 1)],
            }
        )
        fan = WorkflowSpec.model_validate(
            {
                "name": "bench-fan",
                "nodes": [
                    {
                        "id": "each",
                        "node": "transform",
                        "map": "{{ inputs['items'] }}",
                        "concurrency": NODES,
                        "params": {"data": {"v": "{{ item }}"}, "expression": "v"},
                    }
                ],
            }
        )
        spec_chain, spec_fan = build_flow(chain), build_flow(fan)
        # the runner starts nodes without a task timeout (nodes bound their own I/O); the
        # baseline does the same, so the ratio measures scheduling, not Prefect's timeout thread
        node = transform.with_options(timeout_seconds=None)

        @flow(name="hand-chain")
        def hand_chain(client: str) -> Any:
            value: Any = 0
            for i in range(NODES):
                data = {"v": i} if i == 0 else value
                value = node(
                    TransformInput(client=client, data=data, expression="v" if i == 0 else "@")
                ).value
            return value

        @flow(name="hand-fan")
        def hand_fan(client: str, items: list[int]) -> list[Any]:
            futures = [
                node.submit(TransformInput(client=client, data={"v": i}, expression="v"))
                for i in items
            ]
            return [f.result().value for f in futures]

        items = list(range(NODES))
        cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "chain": (lambda: spec_chain(client="bench"), lambda: hand_chain("bench")),
            "fan_out": (
                lambda: spec_fan(client="bench", event={"items": items}),
                lambda: hand_fan("bench", items),
            ),
        }
        for ours, base in cases.values():  # warm-up: imports, block types, first API calls
            ours(), base()
        timings: dict[str, dict[str, list[float]]] = {k: {"spec": [], "hand": []} for k in cases}
        for _ in range(rounds):
            for name, (ours, base) in cases.items():
                for label, fn in (("spec", ours), ("hand", base)):
                    start = time.perf_counter()
                    fn()
                    timings[name][label].append(time.perf_counter() - start)

    ratios = []
    for name, t in timings.items():
        spec_s, hand_s = statistics.median(t["spec"]), statistics.median(t["hand"])
        ratios.append(spec_s / hand_s)
        print(f"{name}_spec_s={spec_s:.3f}")
        print(f"{name}_hand_s={hand_s:.3f}")
        print(f"{name}_ratio={spec_s / hand_s:.3f}")
        print(f"{name}_per_node_overhead_ms={(spec_s - hand_s) / NODES * 1000:.2f}")
    total_spec = sum(statistics.median(t["spec"]) for t in timings.values())
    total_hand = sum(statistics.median(t["hand"]) for t in timings.values())
    print(f"per_node_overhead_ms={(total_spec - total_hand) / (2 * NODES) * 1000:.2f}")
    print(f"spec_overhead_ratio={total_spec / total_hand:.3f}")


if __name__ == "__main__":
    main()
