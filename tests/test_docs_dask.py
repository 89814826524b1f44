"""The Dask fan-out example in docs/operations.md runs as written against a real Dask cluster.

The docs point the flow at ``tcp://dask-scheduler:8786``; here a local cluster with two worker
processes stands in for it (only the address is swapped), so the tasks and their results really
travel between processes. Real parts: Dask scheduler and workers, the session's Prefect server.
"""

from __future__ import annotations

import re
from pathlib import Path

import distributed

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operations.md"


def _dask_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    found = [b for b in blocks if "DaskTaskRunner" in b]
    assert len(found) == 1, "docs/operations.md should show one Dask example"
    return found[0]


def test_dask_example_runs_on_a_dask_cluster(prefect_server: str) -> None:
    source = _dask_example()
    assert 'address="tcp://dask-scheduler:8786"' in source
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        namespace: dict[str, object] = {"__name__": "dask_docs_example"}
        exec(  # noqa: S102 - the docs' own example, with only the scheduler address swapped
            compile(
                source.replace("tcp://dask-scheduler:8786", cluster.scheduler_address),
                str(DOC),
                "exec",
            ),
            namespace,
        )
        rows = [{"text": "a" * n} for n in range(1, 6)]
        scored = namespace["score_all"](rows)  # type: ignore[operator]
        with distributed.Client(cluster) as client:
            # how many ``score`` tasks the scheduler had computed on a worker
            computed = client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.task_prefixes["score"].state_counts["memory"]
            )
    assert scored == [{"text": "a" * n, "score": n} for n in range(1, 6)]
    assert computed == len(rows)
