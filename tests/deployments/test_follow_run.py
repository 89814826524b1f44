"""`agency run` prints every log line of a run that ended quickly: the runner ships logs in
batches after the final state, so ``follow_run`` waits for the engine's closing line."""

from __future__ import annotations

import secrets

from prefect import flow, get_run_logger
from prefect.context import get_run_context

from deployments.runs import follow_run


@flow(name="quick-logger")
def quick_logger(marker: str) -> str:
    for n in range(5):
        get_run_logger().info("line %d of %s", n, marker)
    return str(get_run_context().flow_run.id)  # type: ignore[union-attr]


def test_a_quick_run_prints_all_its_lines(prefect_server: str) -> None:
    marker = secrets.token_hex(4)
    run_id = quick_logger(marker)  # final already; its logs are still on their way
    lines: list[str] = []
    state = follow_run(run_id, lines.append, timeout=60)  # type: ignore[arg-type]
    assert state == "COMPLETED"
    text = "\n".join(lines)
    assert [f"line {n} of {marker}" in text for n in range(5)] == [True] * 5, text
    assert "Finished in state Completed" in text
