"""Bursts: the same burst of signed webhooks to a per-event-only activation and to an adaptive
one, then lone events at rest on both, side by side in one run.

    python -m benchmarks.bursts [--quick] [--events N] [--lone N]

Both activations run the 2-node ``event_archive`` on one ``agency-prefork`` worker behind a real
gateway and dispatcher, with the Prefect server on PostgreSQL (``benchmarks.webhook_execution``).
Per mode it prints events/s, p50/p95 webhook → completed, how many events ran alone, lost and
duplicate runs; then, per mode, the median webhook → completed of ``--lone`` events sent one at
a time once the activation is at rest. Last lines (the headline): ``burst_p95_s`` (adaptive;
goal ≤ 30 with 2,000 events) and ``lone_event_ratio`` (adaptive / per-event-only at rest; goal
≤ 1.1). A full run (2,000 events) spends most of its time on the per-event-only burst (about 11
minutes on a quiet 2-core machine; it runs second, after the adaptive one, whose figures are
printed as soon as they are known). Figures are noisy on a shared machine: quote medians.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks._prefect import prefect_server
from benchmarks.webhook_execution import Plan, run_plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 events, 3 lone events")
    parser.add_argument("--events", type=int, default=None, help="events per burst (2000)")
    parser.add_argument("--lone", type=int, default=None, help="lone events at rest (7)")
    args = parser.parse_args()
    events = args.events or (200 if args.quick else 2000)
    lone = args.lone or (3 if args.quick else 7)
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    os.environ["PREFECT_WORKER_PREFETCH_SECONDS"] = "1"
    work = Path(tempfile.mkdtemp(prefix="bench-bursts-"))
    plans = {
        "adaptive": Plan("adaptive", events, lone=lone),
        "per_event_only": Plan("off", events, lone=lone),
    }

    def report(mode: str, figures: dict[str, float]) -> None:
        for name, value in figures.items():
            print(f"{mode}_{name}={value:.2f}", flush=True)

    print(f"# logs {work}", flush=True)
    with prefect_server(postgres=True):
        results = run_plans(work, plans, report=report)
    adaptive, single = results["adaptive"], results["per_event_only"]
    lost = sum(f["lost"] for f in results.values())
    duplicates = sum(f["duplicates"] for f in results.values())
    print(f"lost={int(lost)}")
    print(f"duplicates={int(duplicates)}")
    print(f"burst_p95_s={adaptive['p95_webhook_to_completed_s']:.2f}")
    ratio = adaptive["lone_event_s"] / max(single["lone_event_s"], 1e-9)
    print(f"lone_event_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
