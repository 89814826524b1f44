"""The Prefect server's CPU per step of a flow run: deployed (worker protocol) and in-process.

    python -m benchmarks.server_cost [--runs N] [--concurrency C]

With a single server process, the server is what limits prefork and in-process throughput in
``benchmarks.execution_throughput``; this shows where its time goes. Against a throwaway
PostgreSQL-backed server that nothing else uses, each API call a flow run causes is sent for
``N`` runs (``C`` at once), one step after the other, and the server's CPU time for the step
(its process tree, read from /proc 3 s after the last call, so that the events the step emitted
are stored and evaluated too), less what it uses when idle (its services' loops), is divided by
``N``.

Steps of a deployed run, in the order of Prefect 3's worker protocol and flow engine: creation
from the deployment (Scheduled), the worker's poll for scheduled runs (one per run, as a
worker polls after each finished run; asking for 4), Pending, the worker's labels, Submitting,
the infrastructure pid, the engine's update of the run, Running, the engine's re-read, Completed.
Steps of a run called in-process: its flow, its creation as Pending, Running, the re-read,
Completed. Task runs, logs and heartbeats cost the same in both and are left out, as are the
worker's two events per run (submitted, executed). Last lines ``deployed_server_ms``,
``inprocess_server_ms`` and ``deployed_minus_inprocess_ms``: what the worker protocol adds to
every deployed run, whichever worker runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from benchmarks._prefect import prefect_server
from benchmarks._runs import create_pools, server_pid, tree_cpu

T = TypeVar("T")
POOL = "bench-cost"
FLOW = """from prefect import flow


@flow(name="bench-cost")
def cost(n: int = 0) -> int:
    return n
"""


class Steps:
    """Runs each step for every item, ``concurrency`` at once, and keeps its server CPU."""

    def __init__(self, pid: int, concurrency: int) -> None:
        self.pid, self.concurrency = pid, concurrency
        self.ms: dict[str, float] = {}
        self.idle = 0.0  # the server's CPU-s per second with nothing to do (its services' loops)

    async def measure_idle(self, seconds: float = 10.0) -> None:
        """The server's background CPU, subtracted from every step."""
        before, start = tree_cpu(self.pid), time.monotonic()
        await asyncio.sleep(seconds)
        self.idle = (tree_cpu(self.pid) - before) / (time.monotonic() - start)
        print(f"# idle server: {1000 * self.idle:.1f} ms of CPU per second", flush=True)

    async def step(
        self, name: str, call: Callable[[T], Awaitable[Any]], items: Iterable[T]
    ) -> list[Any]:
        items = list(items)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(item: T) -> Any:
            async with gate:
                return await call(item)

        await asyncio.sleep(2)  # what the previous step left to do is done
        before, start = tree_cpu(self.pid), time.monotonic()
        results = await asyncio.gather(*(one(item) for item in items))
        await asyncio.sleep(3)  # its events are stored and evaluated
        busy = tree_cpu(self.pid) - before - self.idle * (time.monotonic() - start)
        self.ms[name] = 1000 * busy / len(items)
        print(f"{name}_ms={self.ms[name]:.1f}", flush=True)
        return results


async def measure(pid: int, deployment_id: Any, runs: int, concurrency: int) -> Steps:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Pending, Running, Submitting
    from prefect.utilities.engine import propose_state

    @flow(name="bench-cost")
    def cost(n: int = 0) -> int:
        """Never called: its flow runs are created and moved through states by hand."""
        return n

    steps = Steps(pid, concurrency)
    async with get_client() as api:
        await api.read_flow_runs(limit=1)  # a first write-method call: the CSRF handshake
        await steps.measure_idle()

        async def state(run: Any, new: Callable[[], Any]) -> Any:
            return await propose_state(api, new(), flow_run_id=run)

        def moves(prefix: str) -> list[tuple[str, Callable[[Any], Any]]]:
            return [
                (f"{prefix}_running", lambda r: state(r, Running)),
                (f"{prefix}_reread", api.read_flow_run),
                (f"{prefix}_completed", lambda r: state(r, Completed)),
            ]

        created = await steps.step(
            "deployed_create",
            lambda n: api.create_flow_run_from_deployment(deployment_id, parameters={"n": n}),
            range(runs),
        )
        ids = [run.id for run in created]
        poll = {"limit": 4}
        path = {"name": POOL}
        await steps.step(
            "deployed_poll",
            lambda _: api.request(
                "POST", "/work_pools/{name}/get_scheduled_flow_runs", path_params=path, json=poll
            ),
            ids,
        )
        labels = {"prefect.worker.name": "bench", "prefect.worker.type": "agency-prefork"}
        for name, call in [
            ("deployed_pending", lambda r: state(r, Pending)),
            ("deployed_labels", lambda r: api.update_flow_run_labels(r, labels)),
            ("deployed_submitting", lambda r: state(r, Submitting)),
            ("deployed_pid", lambda r: api.update_flow_run(r, infrastructure_pid="1")),
            ("deployed_engine_update", lambda r: api.update_flow_run(r, flow_version="1")),
            *moves("deployed"),
        ]:
            await steps.step(name, call, ids)

        await steps.step("inprocess_flow", lambda _: api.create_flow(cost), range(runs))
        created = await steps.step(
            "inprocess_create",
            lambda n: api.create_flow_run(cost, parameters={"n": n}, state=Pending()),
            range(runs),
        )
        ids = [run.id for run in created]
        for name, call in moves("inprocess"):
            await steps.step(name, call, ids)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200, help="runs per step (default 200)")
    parser.add_argument("--concurrency", type=int, default=4, help="calls at once (default 4)")
    args = parser.parse_args()
    project = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    (project / "cost.py").write_text(FLOW)
    with prefect_server(postgres=True):
        pid = server_pid()
        if pid is None:
            raise SystemExit("server_cost needs its own server (unset BENCH_PREFECT_API_URL)")
        from prefect import flow

        asyncio.run(create_pools({POOL: "agency-prefork"}))
        deployment_id = flow.from_source(source=str(project), entrypoint="cost.py:cost").deploy(
            name=POOL, work_pool_name=POOL, build=False, push=False, print_next_steps=False
        )
        started = time.monotonic()
        steps = asyncio.run(measure(pid, deployment_id, args.runs, args.concurrency))
    deployed = sum(v for k, v in steps.ms.items() if k.startswith("deployed_"))
    inprocess = sum(v for k, v in steps.ms.items() if k.startswith("inprocess_"))
    print(f"# {args.runs} runs per step, {time.monotonic() - started:.0f}s")
    print(f"deployed_server_ms={deployed:.1f}")
    print(f"inprocess_server_ms={inprocess:.1f}")
    print(f"deployed_minus_inprocess_ms={deployed - inprocess:.1f}")


if __name__ == "__main__":
    main()
