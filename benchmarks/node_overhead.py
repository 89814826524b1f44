"""Node overhead: one flow of 200 trivial steps as bare Prefect tasks (no cache policy, like
nodes) and as catalogued nodes (``delay`` with 0 s: pydantic input/output models, retry policy,
timeout), alternating, in one process, against a plain Python loop of the same step.

    python -m benchmarks.node_overhead [--quick]

Prints medians, the per-step overhead over the plain loop in ms of both, the same in CPU time of
this process (steadier than wall time on a shared machine), the ratio of the best rounds, and,
last, ``overhead_ratio`` (median node-flow time / median bare-flow time; goal <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._prefect import prefect_server

STEPS = 200


def step(seconds: float) -> float:
    """The trivial work every variant does: what the ``delay`` node does with 0 s."""
    start = time.monotonic()
    time.sleep(seconds)
    return round(time.monotonic() - start, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 7")
    args = parser.parse_args()
    rounds = 2 if args.quick else 7

    with prefect_server():
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        from nodes.delay import DelayInput, delay

        # Default tasks hash their source and inputs for caching; nodes never cache, so the
        # baseline does not either and the ratio isolates the node machinery.
        bare_step = task(step, name="bare-step", cache_policy=NO_CACHE)

        @flow(name="bench-bare")
        def bare_flow(steps: int = STEPS) -> float:
            return sum(bare_step(0.0) for _ in range(steps))

        @flow(name="bench-nodes")
        def node_flow(steps: int = STEPS) -> float:
            return sum(
                delay(DelayInput(client="bench", seconds=0.0)).waited_seconds for _ in range(steps)
            )

        def loop() -> float:
            return sum(step(0.0) for _ in range(STEPS))

        bare_flow(10), node_flow(10)  # warm-up: imports, flow registration, first API calls
        timings: dict[str, list[float]] = {"loop": [], "bare": [], "nodes": []}
        cpu: dict[str, list[float]] = {"loop": [], "bare": [], "nodes": []}
        for i in range(rounds):
            order = [("bare", bare_flow), ("nodes", node_flow)]
            if i % 2:
                order.reverse()  # neither variant always runs first
            for label, fn in [("loop", loop), *order]:
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                timings[label].append(time.perf_counter() - start)
                cpu[label].append(time.process_time() - start_cpu)

    loop_s, bare_s, nodes_s = (statistics.median(timings[k]) for k in ("loop", "bare", "nodes"))
    print(f"steps={STEPS}")
    print(f"rounds={rounds}")
    print(f"loop_s={loop_s:.4f}")
    print(f"bare_s={bare_s:.3f}")
    print(f"nodes_s={nodes_s:.3f}")
    print(f"bare_per_step_ms={(bare_s - loop_s) / STEPS * 1000:.2f}")
    print(f"nodes_per_step_ms={(nodes_s - loop_s) / STEPS * 1000:.2f}")
    print(f"node_extra_per_step_ms={(nodes_s - bare_s) / STEPS * 1000:.2f}")
    # CPU time of this process (all its threads) hardly moves with other load on the machine
    bare_cpu, nodes_cpu = statistics.median(cpu["bare"]), statistics.median(cpu["nodes"])
    print(f"bare_cpu_per_step_ms={bare_cpu / STEPS * 1000:.2f}")
    print(f"nodes_cpu_per_step_ms={nodes_cpu / STEPS * 1000:.2f}")
    print(f"cpu_overhead_ratio={nodes_cpu / bare_cpu:.3f}")
    # on a shared, loaded machine the fastest round is the least disturbed one
    print(f"overhead_ratio_best={min(timings['nodes']) / min(timings['bare']):.3f}")
    print(f"overhead_ratio={nodes_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
