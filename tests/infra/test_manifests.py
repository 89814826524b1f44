"""Production manifests cannot start here (no container engine), so they are validated: they
parse, every AGENCY_* variable they set is a real setting, the Prefect server is private and
keyed, and every `agency` command line they run is accepted by the real CLI."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from agency.settings import Settings
from cli.main import app

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "compose.yaml"
K8S = sorted((INFRA / "k8s").glob("*.yaml"))


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _agency_commands(text: str) -> list[list[str]]:
    found = []
    for match in re.finditer(r"(?:exec )?\bagency ([a-z][^\"'\]\n&;]*)", text):
        found.append(shlex.split(match.group(1)))
    return found


def test_all_manifests_parse() -> None:
    assert _docs(COMPOSE)
    for path in K8S:
        assert _docs(path), path


def test_agency_variables_are_real_settings() -> None:
    fields = {f"AGENCY_{name.upper()}" for name in Settings.model_fields}
    used: set[str] = set()
    for path in [COMPOSE, *K8S]:
        used |= set(re.findall(r"\bAGENCY_[A-Z_]+\b", path.read_text()))
    assert used, "the manifests configure nothing"
    assert used <= fields, f"unknown settings: {sorted(used - fields)}"


def test_prefect_server_is_keyed_and_private() -> None:
    compose = _docs(COMPOSE)[0]
    server = compose["services"]["prefect-server"]
    for key in ("PREFECT_SERVER_ENCRYPTION_KEY", "PREFECT_SERVER_API_AUTH_STRING"):
        assert key in server["environment"]
    assert server["environment"]["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    # several API replicas also share event ordering and concurrency leases through Redis
    env = server["environment"]
    assert env["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert env["PREFECT_SERVER_DOCKET_URL"].startswith("redis://redis:")
    assert all(p.startswith("127.0.0.1:") for p in server["ports"])
    # Helm: the settings go to every Prefect pod (global.prefect.env), not only the API pods
    # (server.env), since the background services run in pods of their own
    values = _docs(INFRA / "k8s" / "prefect-server-values.yaml")[0]
    assert values["backgroundServices"]["runAsSeparateDeployment"] is True
    shared = {e["name"]: e for e in values["global"]["prefect"]["env"]}
    for key in ("PREFECT_SERVER_ENCRYPTION_KEY", "PREFECT_SERVER_API_AUTH_STRING"):
        assert "secretKeyRef" in shared[key]["valueFrom"]
    assert shared["PREFECT_MESSAGING_BROKER"]["value"] == "prefect_redis.messaging"
    assert shared["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"]["value"] == "prefect_redis.ordering"
    assert shared["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"]["value"] == (
        "prefect_redis.lease_storage"
    )
    assert shared["PREFECT_SERVER_DOCKET_URL"]["value"].startswith("redis://")
    assert "env" not in values.get("server", {})
    # platform processes authenticate to the private API
    platform_env = compose["x-platform-env"]
    assert "PREFECT_API_AUTH_STRING" in platform_env


def test_platform_services_share_one_image_and_two_workers() -> None:
    services = _docs(COMPOSE)[0]["services"]
    images = {services[s]["image"] for s in ("worker-1", "worker-2", "gateway", "portal")}
    assert images == {"agency-platform:latest"}
    for worker in ("worker-1", "worker-2"):
        command = services[worker]["command"]
        assert command[:3] == ["prefect", "worker", "start"]
        assert command[command.index("--pool") + 1] == Settings().work_pool
    dockerfile = (INFRA / "Dockerfile").read_text()
    project = tomllib.loads((INFRA.parent / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert "cli" in packages and "gateway" in packages
    for package in packages:  # every package the project installs is in the image
        assert f"COPY {package} ./{package}" in dockerfile


@pytest.mark.parametrize("path", [COMPOSE, *K8S], ids=lambda p: p.name)
def test_agency_command_lines_are_accepted_by_the_cli(path: Path) -> None:
    text = path.read_text()
    if isinstance(_docs(path)[0], dict) and "services" in _docs(path)[0]:
        text = "\n".join(
            " ".join(map(str, s.get("command", [])))
            for s in _docs(path)[0]["services"].values()
            if isinstance(s.get("command"), list)
        )
    for args in _agency_commands(text):
        # --help is eager, but click rejects unknown commands and options before honouring it
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, f"`agency {' '.join(args)}` in {path.name}: {result.output}"


def test_webhook_activations_run_on_prefork_workers() -> None:
    pool = Settings.model_fields["webhook_work_pool"].default
    assert pool == "agency-prefork"
    compose = _docs(COMPOSE)[0]
    assert compose["x-platform-env"]["AGENCY_WEBHOOK_WORK_POOL"] == pool
    prefork = [s for name, s in compose["services"].items() if name.startswith("prefork-worker")]
    assert len(prefork) == 2
    for service in prefork:
        command = service["command"]
        assert command[:2] == ["agency", "worker"]
        assert command[command.index("--pool") + 1] == pool
    platform = (INFRA / "k8s" / "platform.yaml").read_text()
    assert f"exec agency worker --pool {pool}" in platform
    assert f"{{name: AGENCY_WEBHOOK_WORK_POOL, value: {pool}}}" in platform


def test_workers_send_heartbeats_and_crash_recovery_is_installed() -> None:
    """Every process that executes flow runs sends flow-run heartbeats at the platform's
    frequency, and each manifest installs the automations that act on their silence."""
    from deployments.recovery import HEARTBEAT_SECONDS

    beat = str(HEARTBEAT_SECONDS)
    install = "from deployments.recovery import ensure_crash_recovery"
    compose = _docs(COMPOSE)[0]
    services = compose["services"]
    assert compose["x-platform-env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat
    workers = [name for name in services if "worker" in name]
    assert len(workers) == 4, workers
    for name in workers:
        assert services[name]["environment"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat, name
    recovery = services["crash-recovery"]
    assert install in " ".join(recovery["command"])
    assert recovery["environment"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat

    def env(container: dict[str, Any]) -> dict[str, str]:
        return {e["name"]: e.get("value") for e in container.get("env", [])}

    platform = _docs(INFRA / "k8s" / "platform.yaml")
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
        for d in platform
        if d["kind"] in {"Deployment", "Job"}
    }
    assert env(pods["agency-prefork-worker"])["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat
    job = pods["agency-crash-recovery"]
    assert install in " ".join(job["command"])
    assert env(job)["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat
    # the Kubernetes worker passes the Prefect settings it was given to its flow-run pods
    values = _docs(INFRA / "k8s" / "prefect-worker-values.yaml")[0]
    extra = {e["name"]: e["value"] for e in values["worker"]["extraEnvVars"]}
    assert extra["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat
