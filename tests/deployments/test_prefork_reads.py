"""What a prefork worker shares with its children: recent reads, and the children's TLS context.

The reads are checked against a real HTTP server standing in for the Prefect API (it counts
what reaches it); the end-to-end check, a deployed run answering its engine's reads from the
worker's snapshot, is in ``test_prefork_worker.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import certifi
import httpx
import pytest
from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

from deployments.prefork.reads import SHAREABLE, ReadCache, answer_from, answered
from tests.fixtures.http_server import HttpServer

DEPLOYMENT = f"/deployments/{uuid.uuid4()}"
FLOW_RUN = f"/flow_runs/{uuid.uuid4()}"


def _get_twice(cache: ReadCache, base: str, method: str, path: str, pause: float = 0) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(base_url=base) as http:
            cache.install(http)
            for _ in range(2):
                await http.send(http.build_request(method, path))
                await asyncio.sleep(pause)

    asyncio.run(go())


def test_the_worker_reuses_a_shareable_read_until_it_is_older_than_its_limit(
    http_server: HttpServer,
) -> None:
    http_server.respond("/api" + DEPLOYMENT, {"id": "d", "version": 1})
    cache = ReadCache(seconds=0.5)
    _get_twice(cache, http_server.url("/api"), "GET", DEPLOYMENT)
    assert len(http_server.requests_to("/api" + DEPLOYMENT)) == 1
    assert cache.snapshot([DEPLOYMENT], {})["reads"] == {DEPLOYMENT: '{"id": "d", "version": 1}'}

    time.sleep(0.6)
    assert cache.snapshot([DEPLOYMENT], {})["reads"] == {}  # too old to hand to a child
    _get_twice(cache, http_server.url("/api"), "GET", DEPLOYMENT)
    assert len(http_server.requests_to("/api" + DEPLOYMENT)) == 2


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", FLOW_RUN, 200),  # a flow run changes all the time
        ("PATCH", DEPLOYMENT, 200),  # writes always reach the server
        ("GET", DEPLOYMENT, 404),  # only answers that found the record are kept
        ("GET", DEPLOYMENT + "/schedules", 200),
    ],
    # fixed ids: pytest-xdist needs every worker to collect the same names (the paths are random)
    ids=["flow-run", "deployment-write", "deployment-404", "deployment-schedules"],
)
def test_other_requests_always_reach_the_server(
    http_server: HttpServer, method: str, path: str, status: int
) -> None:
    http_server.respond("/api" + path, {"ok": True} if status == 200 else status)
    cache = ReadCache()
    _get_twice(cache, http_server.url("/api"), method, path)
    assert len(http_server.requests_to("/api" + path)) == 2
    assert cache.snapshot([path], {})["reads"] == {}


def test_shareable_paths_are_the_records_a_run_reads() -> None:
    for path in (
        DEPLOYMENT,
        f"/flows/{uuid.uuid4()}",
        f"/work_queues/{uuid.uuid4()}",
        "/work_pools/clients%20pool",
        "/admin/storage",
    ):
        assert SHAREABLE.match(path), path
    for path in (FLOW_RUN, "/work_pools/p/get_scheduled_flow_runs", "/deployments/by-name"):
        assert not SHAREABLE.match(path), path


@pytest.fixture
def restore_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """``answer_from`` patches Prefect's client classes, as it does in a child; undo it."""
    for cls in (PrefectHttpxAsyncClient, PrefectHttpxSyncClient):
        monkeypatch.setattr(cls, "send", cls.send)


@pytest.mark.usefixtures("restore_clients")
def test_a_child_answers_its_snapshot_and_the_flow_run_only_once(http_server: HttpServer) -> None:
    api = http_server.url("/api")
    http_server.respond("/api" + FLOW_RUN, {"state": "RUNNING"})
    answer_from(
        {
            "api": api,
            "reads": {DEPLOYMENT: '{"id": "from-worker"}'},
            "once": {FLOW_RUN: '{"state": "SCHEDULED"}'},
        }
    )
    with PrefectHttpxSyncClient(base_url=api) as http:
        deployments = [http.get(DEPLOYMENT).json() for _ in range(2)]
        flow_runs = [http.get(FLOW_RUN).json() for _ in range(2)]

    async def read_async() -> object:
        async with PrefectHttpxAsyncClient(base_url=api) as http:
            return (await http.get(DEPLOYMENT)).json()

    assert deployments == [{"id": "from-worker"}] * 2
    assert asyncio.run(read_async()) == {"id": "from-worker"}
    assert flow_runs == [{"state": "SCHEDULED"}, {"state": "RUNNING"}]
    assert http_server.requests_to("/api" + DEPLOYMENT) == []
    assert len(http_server.requests_to("/api" + FLOW_RUN)) == 1
    assert answered()[-4:] == [DEPLOYMENT, DEPLOYMENT, FLOW_RUN, DEPLOYMENT]


@pytest.mark.usefixtures("restore_clients")
def test_a_child_talking_to_another_api_url_does_not_use_the_snapshot(
    http_server: HttpServer,
) -> None:
    http_server.respond("/other" + DEPLOYMENT, {"id": "from-server"})
    answer_from({"api": http_server.url("/api"), "reads": {DEPLOYMENT: '{"id": "x"}'}, "once": {}})
    with PrefectHttpxSyncClient(base_url=http_server.url("/other")) as http:
        assert http.get(DEPLOYMENT).json() == {"id": "from-server"}


CONTEXTS = """
import json, ssl, sys
import deployments.prefork.child as child
from prefect.client.orchestration import get_client

child.prepare_template()
parsed = []
original = child._create_default_context
child._create_default_context = lambda *a, **k: parsed.append(k.get("cafile")) or original(*a, **k)
clients = [get_client(), get_client(sync_client=True), get_client()]
shared = {id(c._client._transport._pool._ssl_context) for c in clients}
bundle = clients[0]._client._transport._pool._ssl_context
other = ssl.create_default_context(cafile=sys.argv[1])  # not Prefect's client: a new one
other.check_hostname = False
other.verify_mode = ssl.CERT_NONE
print(json.dumps({
    "parsed_after_fork": parsed,
    "prefect_contexts": len(shared),
    "other_is_shared": other is bundle,
    "prefect_still_verifies": bundle.verify_mode == ssl.CERT_REQUIRED and bundle.check_hostname,
}))
"""


def test_children_share_the_templates_tls_context_of_the_ca_bundle_prefect_uses(
    tmp_path: Path,
) -> None:
    """Prefect's client parses its CA bundle (``SSL_CERT_FILE`` when set) for every client; a
    child uses the context the template made. Other callers still get a context of their own,
    so one that relaxes its checks cannot weaken Prefect's."""
    bundle = tmp_path / "bundle.pem"
    shutil.copy(certifi.where(), bundle)
    env = {"SSL_CERT_FILE": str(bundle), "PREFECT_API_URL": "https://prefect.invalid/api"}
    result = subprocess.run(
        [sys.executable, "-c", CONTEXTS, str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "parsed_after_fork": [str(bundle)],  # only the caller that is not Prefect's client
        "prefect_contexts": 1,
        "other_is_shared": False,
        "prefect_still_verifies": True,
    }
