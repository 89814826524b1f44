"""Per-client egress allowances (``agency/egress/scoped.py``): the demo client alone may reach
its loopback services, by the ``host:port`` written for it; any other client is refused the same
address, over real sockets to a real HTTP server and a real SMTP server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agency.egress import (
    EgressRefused,
    client_scope,
    egress_policy,
    guarded_client,
    open_smtp,
)
from agency.egress.scoped import client_allowances, write_client_allowance
from agency.settings import Settings
from tests.fixtures.http_server import HttpServer
from tests.fixtures.smtp import SmtpServer


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", egress_allow=[])  # the suite allows loopback


def test_only_the_allowed_client_reaches_its_loopback_http_service(
    tmp_path: Path, http_server: HttpServer
) -> None:
    settings = _settings(tmp_path)
    http_server.respond("/api/today", {"ok": True})
    url = http_server.url("/api/today")
    port = httpx.URL(http_server.base_url).port
    write_client_allowance(settings.home, "demo", [f"127.0.0.1:{port}"])
    policy = egress_policy(settings)
    with client_scope("demo"), guarded_client(policy) as http:
        assert http.get(url).json() == {"ok": True}
    for who in ("acme", None):  # another client, and no client at all
        with guarded_client(policy) as http:
            if who is None:
                with pytest.raises(EgressRefused, match="loopback"):
                    http.get(url)
            else:
                with client_scope(who), pytest.raises(EgressRefused, match="loopback"):
                    http.get(url)
    assert len(http_server.requests_to("/api/today")) == 1


def test_the_allowance_names_host_and_port_exactly(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    write_client_allowance(settings.home, "demo", ["127.0.0.1:2525"])
    policy = egress_policy(settings)
    with client_scope("demo"):
        assert [str(a) for a in policy.check("127.0.0.1", 2525)] == ["127.0.0.1"]
        with pytest.raises(EgressRefused):
            policy.check("127.0.0.1", 2526)  # another port of the same host
        with pytest.raises(EgressRefused):
            policy.check("localhost", 2525)  # another name for the same address


def test_the_platform_s_own_services_stay_refused_even_for_the_allowed_client(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home", gateway_port=18080, egress_allow=[])
    write_client_allowance(settings.home, "demo", ["127.0.0.1:18080"])
    with client_scope("demo"), pytest.raises(EgressRefused, match="platform's own"):
        egress_policy(settings).check("127.0.0.1", 18080)


def test_only_the_allowed_client_reaches_the_smtp_service(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    import ssl

    settings = _settings(tmp_path)
    write_client_allowance(settings.home, "demo", [f"127.0.0.1:{smtp_server.port}"])
    policy = egress_policy(settings)
    context = ssl.create_default_context()
    with client_scope("demo"):
        open_smtp(
            "127.0.0.1",
            smtp_server.port,
            security="none",
            context=context,
            timeout=10,
            policy=policy,
        ).quit()
    with client_scope("other"), pytest.raises(EgressRefused):
        open_smtp(
            "127.0.0.1",
            smtp_server.port,
            security="none",
            context=context,
            timeout=10,
            policy=policy,
        )


def test_removing_the_allowance_closes_the_door_again(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    write_client_allowance(settings.home, "demo", ["127.0.0.1:2525"])
    write_client_allowance(settings.home, "other", ["127.0.0.1:2600"])
    write_client_allowance(settings.home, "demo", None)
    assert dict(client_allowances(settings.home)) == {"other": frozenset({("127.0.0.1", 2600)})}
    with client_scope("demo"), pytest.raises(EgressRefused):
        egress_policy(settings).check("127.0.0.1", 2525)


@pytest.mark.usefixtures("prefect_server")
def test_a_node_runs_in_its_client_s_scope(
    tmp_path: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real ``http_request`` task: the demo client's run reaches the loopback URL,
    another client's run with the same URL fails with the egress refusal and sends nothing."""
    from agency.settings import get_settings
    from nodes import HttpRequestInput, HttpRequestOutput, http_request
    from tests.nodes import run_node

    http_server.respond("/api/today", {"ok": True})
    url = http_server.url("/api/today")
    home = tmp_path / "home"
    write_client_allowance(home, "demo", [f"127.0.0.1:{httpx.URL(url).port}"])
    monkeypatch.setenv("AGENCY_HOME", str(home))
    monkeypatch.setenv("AGENCY_EGRESS_ALLOW", "")
    get_settings.cache_clear()
    try:
        ok = run_node(http_request, HttpRequestInput(client="demo", url=url)).result
        refused = run_node(http_request, HttpRequestInput(client="acme", url=url)).result
    finally:
        get_settings.cache_clear()
    assert isinstance(ok, HttpRequestOutput) and ok.body == {"ok": True}
    assert isinstance(refused, EgressRefused) and "loopback" in str(refused)
    assert len(http_server.requests_to("/api/today")) == 1
