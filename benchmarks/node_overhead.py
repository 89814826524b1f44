"""Node overhead: one flow of 200 trivial steps as bare Prefect tasks (no cache policy, like
nodes) and as catalogued nodes (``delay`` with 0 s: pydantic input/output models, retry policy,
timeout), alternating, in one process, against a plain Python loop of the same step.

    python -m benchmarks.node_overhead [--quick]

Each round runs the plain loop, the bare flow and the node flow back to back (the order of the
two flows alternates); the steps are timed inside the flow body, so creating the flow run (the
same for both) does not count. Prints medians, the per-step overhead over the plain loop in ms,
the same in CPU time of this process, a per-step ratio from one flow that interleaves a bare step
and a node step, and, last, ``overhead_ratio``: the median over rounds of node-flow time /
bare-flow time of the same round (goal <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from benchmarks._prefect import prefect_server

STEPS = 200


def step(seconds: float) -> float:
    """The trivial work every variant does: what the ``delay`` node does with 0 s."""
    start = time.monotonic()
    time.sleep(seconds)
    return round(time.monotonic() - start, 3)


def timed(call: Callable[[], object], steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``steps`` calls of ``call``.

    Measured inside the flow body: creating the flow run is the same for both variants, and on
    the benchmark's SQLite server it waits (HTTP 503 + client retry) while the server still
    writes the previous flow's task-run events, which would swamp the steps' own cost.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        call()
    return time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="4 rounds instead of 15")
    args = parser.parse_args()
    rounds = 4 if args.quick else 15

    with prefect_server():
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        from nodes.delay import DelayInput, delay

        # Default tasks hash their source and inputs for caching; nodes never cache, so the
        # baseline does not either and the ratio isolates the node machinery.
        bare_step = task(step, name="bare-step", cache_policy=NO_CACHE)
        steps = {
            "loop": lambda: step(0.0),
            "bare": lambda: bare_step(0.0),
            "nodes": lambda: delay(DelayInput(client="bench", seconds=0.0)),
        }

        @flow(name="bench-bare")
        def bare_flow(n: int = STEPS) -> tuple[float, float]:
            return timed(steps["bare"], n)

        @flow(name="bench-nodes")
        def node_flow(n: int = STEPS) -> tuple[float, float]:
            return timed(steps["nodes"], n)

        @flow(name="bench-interleaved")
        def interleaved_flow(n: int = STEPS) -> dict[str, list[float]]:
            """Bare step and node step one after the other: both see the same moment's load."""
            per_step: dict[str, list[float]] = {"bare": [], "nodes": []}
            for _ in range(n):
                for label, values in per_step.items():
                    values.append(timed(steps[label], 1)[0])
            return per_step

        bare_flow(10), node_flow(10)  # warm-up: imports, flow registration, first API calls
        wall: dict[str, list[float]] = {"loop": [], "bare": [], "nodes": []}
        cpu: dict[str, list[float]] = {"loop": [], "bare": [], "nodes": []}
        whole: dict[str, list[float]] = {"loop": [], "bare": [], "nodes": []}
        for i in range(rounds):
            order = [("bare", bare_flow), ("nodes", node_flow)]
            if i % 2:
                order.reverse()  # neither variant always runs first
            for label, fn in [("loop", lambda: timed(steps["loop"], STEPS)), *order]:
                start = time.perf_counter()
                wall_s, cpu_s = fn()
                whole[label].append(time.perf_counter() - start)
                wall[label].append(wall_s)
                cpu[label].append(cpu_s)
        per_step = interleaved_flow(STEPS * rounds // 2)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    loop_s, bare_s, nodes_s = (median(wall[k]) for k in ("loop", "bare", "nodes"))
    print(f"steps={STEPS}")
    print(f"rounds={rounds}")
    print(f"loop_s={loop_s:.4f}")
    print(f"bare_s={bare_s:.3f}")
    print(f"nodes_s={nodes_s:.3f}")
    print(f"bare_per_step_ms={(bare_s - loop_s) / STEPS * 1000:.2f}")
    print(f"nodes_per_step_ms={(nodes_s - loop_s) / STEPS * 1000:.2f}")
    print(f"node_extra_per_step_ms={(nodes_s - bare_s) / STEPS * 1000:.2f}")
    # CPU time of this process (all its threads) moves less with other load on the machine
    bare_cpu, nodes_cpu = median(cpu["bare"]), median(cpu["nodes"])
    print(f"bare_cpu_per_step_ms={bare_cpu / STEPS * 1000:.2f}")
    print(f"nodes_cpu_per_step_ms={nodes_cpu / STEPS * 1000:.2f}")
    print(f"cpu_overhead_ratio={nodes_cpu / bare_cpu:.3f}")
    print(f"whole_flow_ratio={median(whole['nodes']) / median(whole['bare']):.3f}")
    bare_step_ms, node_step_ms = (median(per_step[k]) * 1000 for k in ("bare", "nodes"))
    print(f"interleaved_bare_step_ms={bare_step_ms:.3f}")
    print(f"interleaved_node_step_ms={node_step_ms:.3f}")
    print(f"interleaved_step_ratio={node_step_ms / bare_step_ms:.3f}")
    # each round's two flows run back to back: their ratio cancels the drift between rounds
    paired = [n / b for n, b in zip(wall["nodes"], wall["bare"], strict=True)]
    print(f"overhead_ratio={median(paired):.3f}")


if __name__ == "__main__":
    main()
