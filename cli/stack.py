"""The embedded platform stack behind ``agency up`` / ``make up``.

Starts a real ``prefect server start`` on SQLite (health in ~4 s, unlike ephemeral mode's 8-15 s
per process), applies platform DB migrations, registers our block types, creates the ``agency``
process work pool with the deployment of the daily credential health check
(:func:`install_health_check`) and starts one worker, and an ``agency-prefork`` pool with one
prefork worker, then the gateway and the portal. A :class:`cli.supervisor.Supervisor` restarts
any of them that dies (with backoff, logged to stdout and ``<home>/logs/stack.log``); Ctrl-C or
SIGTERM stops every process it started, and so does a child that keeps failing. The Prefect API
requires an auth string generated once into ``<home>/prefect-api-auth`` (see
:func:`api_auth_string`).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime

import httpx
from cryptography.fernet import Fernet

from agency.keyfiles import secret_file
from agency.settings import STACK_SETTINGS_FILE, Settings, get_settings
from cli.supervisor import Child, ChildFailed, Supervisor, interrupt_on_sigterm

AUTH_FILE = "prefect-api-auth"
#: the daily credential health check: ``credential_health/daily`` at 06:00 UTC
HEALTH_DEPLOYMENT = "daily"
HEALTH_CRON = "0 6 * * *"
#: the notifications sweep (:mod:`services.notifications`): ``notifications_sweep/every-minute``
SWEEP_DEPLOYMENT = "every-minute"


def encryption_key(settings: Settings) -> str:
    """The Prefect server's Fernet key, generated once into ``<home>/prefect-encryption.key``.

    Prefect encrypts block documents (our embedded secret store) with this key; kept outside the
    database, a stolen ``prefect.db`` alone does not reveal client secrets. Mode 0600.
    """
    return secret_file(
        settings.home / "prefect-encryption.key", lambda: Fernet.generate_key().decode()
    )


def api_auth_string(settings: Settings) -> str:
    """The Prefect API's auth string, generated once into ``<home>/prefect-api-auth`` (0600).

    The server requires it (``PREFECT_SERVER_API_AUTH_STRING``) on every call but ``/health``
    and ``/ready``; every process of the stack sends it (``PREFECT_API_AUTH_STRING``), and so
    does the ``agency`` CLI in another shell, which reads this file.
    """
    return secret_file(settings.home / AUTH_FILE, lambda: secrets.token_urlsafe(32))


def stack_environment(settings: Settings) -> dict[str, str]:
    """Environment for every process of the embedded stack."""
    api_url = f"http://{settings.api_host}:{settings.api_port}/api"
    auth = api_auth_string(settings)
    return {
        # a heartbeat every 30 s, not Prefect's 180: the crash-recovery automations installed
        # below (silence = three heartbeats) then recover a dead worker's runs after 90 s, not
        # 9 min; the environment may still set its own
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        **os.environ,
        "PREFECT_HOME": str(settings.home / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ENCRYPTION_KEY": encryption_key(settings),
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_API_AUTH_STRING": auth,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # "Run now" should start within a couple of seconds, not the default 10 s poll
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "AGENCY_HOME": str(settings.home),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(settings.project_dir), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def install_health_check(settings: Settings | None = None) -> str:
    """Create or update the deployment of the daily credential health check
    (:mod:`services.health_flow`) on the platform's work pool, at 06:00 UTC; idempotent.

    Returns the deployment's id. Run where the Prefect API is reachable (``agency up`` runs it in
    a child process with the stack's environment; the manifests in a one-shot job).
    """
    from prefect import Flow
    from prefect.schedules import Cron

    from services.health_flow import ENTRYPOINT

    settings = settings or get_settings()
    flow = Flow.from_source(source=str(settings.project_dir), entrypoint=ENTRYPOINT)
    deployment_id = flow.deploy(  # type: ignore[union-attr]
        name=HEALTH_DEPLOYMENT,
        work_pool_name=settings.work_pool,
        build=False,
        push=False,
        schedules=[Cron(HEALTH_CRON, timezone="UTC")],
        tags=["platform"],
        description="Daily check of every client's credentials; emails each new breakage once.",
        print_next_steps=False,
        ignore_warnings=True,
    )
    return str(deployment_id)


def install_notifications_sweep(settings: Settings | None = None) -> str:
    """Create or update ``notifications_sweep/every-minute`` (:mod:`services.notifications.flow`)
    on the platform's work pool, every minute; idempotent. Returns the deployment's id."""
    from prefect import Flow
    from prefect.schedules import Interval

    from services.notifications.flow import ENTRYPOINT

    settings = settings or get_settings()
    flow = Flow.from_source(source=str(settings.project_dir), entrypoint=ENTRYPOINT)
    deployment_id = flow.deploy(  # type: ignore[union-attr]
        name=SWEEP_DEPLOYMENT,
        work_pool_name=settings.work_pool,
        build=False,
        push=False,
        schedules=[Interval(60)],
        concurrency_limit=1,  # one pass at a time; a pass that overruns delays the next
        tags=["platform"],
        description="Finds failed runs, waiting approvals and late runs; sends notifications.",
        print_next_steps=False,
        ignore_warnings=True,
    )
    return str(deployment_id)


def install_platform_flows(settings: Settings | None = None) -> None:
    """Install the platform's own deployments: the health check, the notifications sweep, the
    long-waits check and the rollout tick."""
    install_health_check(settings)
    install_notifications_sweep(settings)
    from services.rollout_flow import install_rollout_tick
    from services.waits_flow import install_waits_check

    install_waits_check(settings)
    install_rollout_tick(settings)


def _wait_healthy(url: str, supervisor: Supervisor, timeout: float = 90) -> None:
    """Poll ``url`` until it answers 200, restarting children that die meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f}s")


def _start_demo(
    settings: Settings,
    env: dict[str, str],
    supervisor: Supervisor,
    step: Callable[[str], None],
) -> list[str]:
    """Wait for the demo services (:mod:`services.demo.servers`, started with the Prefect
    server), create the demo on a fresh home (``agency demo --if-fresh``, which prints the demo
    users' passwords once) and return the summary lines saying where to look."""
    from services.demo import DEMO_AGENCY_EMAIL, DEMO_CLIENT_EMAIL, DemoLayout

    layout = DemoLayout.of(settings)
    _wait_healthy(f"{layout.http_url}/healthz", supervisor)
    step(f"demo services up (mail smtp://{layout.host}:{layout.smtp_port}, {layout.http_url})")
    created = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--if-fresh"],
        env=env,
        cwd=settings.project_dir,
    )
    if created.returncode:
        print("warning: the demo was not created (see above)", file=sys.stderr)
    step("demo checked (AGENCY_DEMO=false skips it)")
    return [
        f"demo users   {DEMO_AGENCY_EMAIL} (agency), {DEMO_CLIENT_EMAIL} (client); "
        "passwords printed above, once",
        f"demo inbox   portal page Demo inbox (agency users), files in {layout.inbox}",
        "demo webhook agency demo send-webhook    (runs and emails: agency demo status)",
    ]


def write_stack_settings(settings: Settings) -> None:
    """Write the settings this stack runs with into ``<home>/stack-settings.json`` (0600), where
    the ``agency`` CLI in another shell reads them (environment > that file > defaults)."""
    path = settings.home / STACK_SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings.stack_file_values(), indent=2))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def run_stack(settings: Settings) -> int:
    """Start the stack, print its URLs and supervise it until Ctrl-C / SIGTERM (return 0) or until
    a child keeps failing (return 1)."""
    began = time.monotonic()
    env = stack_environment(settings)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    write_stack_settings(settings)
    prefect = [sys.executable, "-m", "prefect"]

    def log(line: str) -> None:
        print(f"agency up: {line}", flush=True)
        with (logs / "stack.log").open("a") as out:
            out.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")

    def step(line: str) -> None:
        """One start-up step, with the seconds since ``agency up`` began."""
        print(f"agency up: [{time.monotonic() - began:5.1f} s] {line}", flush=True)

    supervisor = Supervisor(log=log)

    def start(name: str, args: list[str]) -> None:
        supervisor.start(
            Child(name, args, env=env, cwd=settings.project_dir, log=logs / f"{name}.log")
        )

    interrupt_on_sigterm()
    try:
        print(f"starting Prefect server on {env['PREFECT_API_URL']} (logs in {logs})", flush=True)
        start(
            "prefect-server",
            prefect
            + ["server", "start", "--host", settings.api_host, "--port", str(settings.api_port)],
        )
        if settings.demo:  # mail catcher, sample API, demo model: ready long before they are used
            start("demo-services", [sys.executable, "-m", "services.demo"])
        _wait_healthy(f"{env['PREFECT_API_URL']}/health", supervisor)
        step("Prefect server healthy")

        from agency.db import upgrade

        upgrade(settings.platform_database_url)
        step("platform DB migrated")
        subprocess.run(
            prefect + ["block", "register", "-m", "blocks"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=settings.project_dir,
        )
        # Prefect automations that crash and reschedule the runs of a dead worker machine
        recovery = "from deployments.recovery import ensure_crash_recovery as e; e()"
        if subprocess.run(
            [sys.executable, "-c", recovery], env=env, cwd=settings.project_dir
        ).returncode:
            print("warning: crash-recovery automations not installed", file=sys.stderr)
        step("block types registered, crash-recovery automations installed")
        subprocess.run(
            prefect
            + ["work-pool", "create", settings.work_pool, "--type", "process", "--overwrite"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # the daily credential health check and the notifications sweep, run by the worker below
        health = "from cli.stack import install_platform_flows as i; i()"
        if subprocess.run(
            [sys.executable, "-c", health],
            env=env,
            cwd=settings.project_dir,
            stdout=subprocess.DEVNULL,
        ).returncode:
            print(
                "warning: a platform flow (health check, notifications sweep, long waits, "
                "rollout tick) not installed",
                file=sys.stderr,
            )
        step(f"work pool {settings.work_pool} and the daily credential health check ready")
        start(
            "worker",
            prefect + ["worker", "start", "--pool", settings.work_pool, "--type", "process"],
        )
        # runs forked from a warm template: webhook-started activations go here (see README)
        prefork_pool = settings.webhook_work_pool or "agency-prefork"
        start(
            "prefork-worker",
            [sys.executable, "-m", "cli.main", "worker", "--pool", prefork_pool, "--limit", "4"],
        )
        start(
            "gateway",
            [sys.executable, "-m", "cli.main", "gateway"]
            + ["--host", settings.gateway_host, "--port", str(settings.gateway_port)],
        )
        step("workers started")
        _wait_healthy(f"http://{settings.gateway_host}:{settings.gateway_port}/healthz", supervisor)
        step(f"gateway healthy on {settings.gateway_url}")
        from cli.commands.portal import portal_url, streamlit_command

        start("portal", streamlit_command(settings))
        step(f"portal started on {portal_url(settings)}")
        demo_lines = _start_demo(settings, env, supervisor, step) if settings.demo else []
        ui = env["PREFECT_API_URL"].removesuffix("/api")
        print(
            "\nagency platform is up (embedded default)\n"
            f"  portal       {portal_url(settings)} (agency user add EMAIL --role agency)\n"
            f"  Prefect UI   {ui}\n"
            f"  Prefect API  {env['PREFECT_API_URL']}\n"
            f"  platform DB  {settings.platform_database_url}\n"
            f"  secrets      Prefect block storage (key: {settings.home}/prefect-encryption.key)\n"
            f"  work pools   {settings.work_pool} (1 process worker: cron and manual runs), "
            f"{prefork_pool} (1 prefork worker: webhook-started runs)\n"
            f"  webhooks     {settings.gateway_url}/hooks/<client>/<workflow> (API docs /docs)\n"
            f"  health check credential_health/{HEALTH_DEPLOYMENT} daily at 06:00 UTC "
            "(agency connections check: now)\n"
            + "".join(f"  {line}\n" for line in demo_lines)
            + f"started in {time.monotonic() - began:.0f} s. "
            "A process that dies is restarted (see logs/stack.log). Press Ctrl-C to stop.",
            flush=True,
        )
        code = supervisor.run()
    except KeyboardInterrupt:
        log("interrupted: stopping every child")
        code = 0
    except ChildFailed as exc:
        log(f"giving up: {exc}; stopping every child")
        supervisor.failure, code = exc, 1
    finally:
        supervisor.stop()
    if supervisor.failure is not None:
        name = supervisor.failure.name
        print(
            f"agency up stopped: {supervisor.failure}; see {logs / f'{name}.log'}",
            file=sys.stderr,
        )
    return code
