"""Run by test_redis_broker in a subprocess against the Redis-brokered server: one flow run with
a burst of trivial task runs. Prints the flow run id."""

from __future__ import annotations

import sys

from prefect import flow, task
from prefect.context import get_run_context


@task
def tick(i: int) -> int:
    return i


@flow(name="burst")
def burst(n: int) -> str:
    futures = tick.map(range(n))
    futures.wait()
    return str(get_run_context().flow_run.id)  # type: ignore[union-attr]


if __name__ == "__main__":
    print(burst(int(sys.argv[1])))
