"""Test session set-up.

Prefect reads its settings when it is first imported, so the environment for the session's Prefect
server (API URL on a free port, a private PREFECT_HOME, an encryption key) is fixed here, before
any test module imports Prefect. Each real service has a session fixture in ``tests/fixtures/``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.fixtures._net import free_port

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="agency-tests-"))
_PREFECT_PORT = free_port()
_AUTH = secrets.token_urlsafe(24)

os.environ.update(
    {
        "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{_PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        # one embedded-store key for every process of the session, whatever AGENCY_HOME a test
        # gives its platform (a stack shares one home, so there it comes from <home>/secrets.key)
        "AGENCY_SECRETS_KEY": Fernet.generate_key().decode(),
        # the session's Prefect server requires auth, as every stack of the platform does
        "PREFECT_SERVER_API_AUTH_STRING": _AUTH,
        "PREFECT_API_AUTH_STRING": _AUTH,
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_TASKS_DEFAULT_RETRY_DELAY_SECONDS": "0",
        "AGENCY_HOME": str(_SESSION_DIR / "agency"),
        # every real service of the tests listens on loopback: the session allow-lists it for the
        # egress guard (the product's default stays closed; tests of the guard clear this)
        "AGENCY_EGRESS_ALLOW": "127.0.0.0/8,::1",
        # webhook activations run on the test's own work_pool (where its worker, if any,
        # polls); tests of the prefork routing set webhook_work_pool explicitly
        "AGENCY_WEBHOOK_WORK_POOL": "",
    }
)
for _var in (
    "AGENCY_DATABASE_URL",
    "AGENCY_VAULT_ADDR",
    "AGENCY_VAULT_TOKEN",
    "AGENCY_SCRAPE_ALLOW_HOSTS",
):
    os.environ.pop(_var, None)

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if not p.name.startswith("_")
)

SESSION_DIR = _SESSION_DIR
PREFECT_PORT = _PREFECT_PORT


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` (``make test``) honour ``xdist_group`` marks on pytest 9.2.

    pytest-xdist groups a test by suffixing its node id with ``@<group>`` on the worker, but it
    writes ``item._nodeid``, which pytest 9.2 no longer reads (its node ids are structured,
    ``item._id``): the marks are then silently ignored and grouped tests run side by side on
    different workers (pytest-dev/pytest-xdist#1386). Apply the suffix here when xdist could not.
    """
    if not config.getoption("loadgroup", default=False):
        return  # not an xdist worker of a --dist loadgroup run
    for item in items:
        names = sorted(
            {
                str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")
            }
        )
        suffix = "@" + "_".join(names)
        if not names or item.nodeid.endswith(suffix):
            continue
        grouped = f"{item.nodeid}{suffix}"
        if hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(grouped)
        else:
            item._nodeid = grouped
        if item.nodeid != grouped:
            raise pytest.UsageError(
                f"cannot put {item.nodeid} into its xdist_group: run with `-n 0` or update "
                "the workaround in tests/conftest.py"
            )
