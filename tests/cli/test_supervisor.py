"""``cli/supervisor.py`` and ``agency up`` staying up: dead children come back, with backoff.

The supervisor's tests run tiny ``python -c`` children with its timings scaled down; the last test
runs the real stack (``python -m cli.main up``) on free ports, kills a worker and the Prefect
server with SIGKILL and watches them come back while the gateway keeps answering.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from cli.supervisor import Child, ChildFailed, RestartPolicy, Supervisor
from tests.fixtures._net import free_port, stop_process, wait_http

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie left for init to reap runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


def _delays(lines: list[str]) -> list[float]:
    return [float(d) for d in re.findall(r"restarting in ([\d.]+) s", "\n".join(lines))]


def test_a_killed_child_is_restarted_after_the_first_delay_and_both_are_logged() -> None:
    lines: list[str] = []
    sup = Supervisor(RestartPolicy(first_delay=0.2), log=lines.append)
    sup.start(Child("sleeper", SLEEPER))
    sup.start(Child("steady", SLEEPER))
    first, steady = sup.pid("sleeper"), sup.pid("steady")
    try:
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()

        def restarted() -> bool:
            sup.check()
            return sup.pid("sleeper") not in (None, first)

        _wait_for(restarted, 5, "a restart")
        assert time.monotonic() - killed >= 0.2
        second = sup.pid("sleeper")
        assert _gone(first) and not _gone(second) and sup.pid("steady") == steady
        assert lines == [
            f"sleeper (pid {first}) exited with code -9 (SIGKILL); restarting in 0.2 s",
            f"sleeper restarted (pid {second}; restart 1 within 60 s)",
        ]
    finally:
        sup.stop()
    assert _gone(second) and _gone(steady)


def test_a_crash_looping_child_backs_off_exponentially_then_the_supervisor_gives_up() -> None:
    lines: list[str] = []
    policy = RestartPolicy(first_delay=0.05, max_delay=0.2, max_restarts=5, window=60)
    sup = Supervisor(policy, log=lines.append, poll_seconds=0.01)
    sup.start(Child("crasher", CRASHER))
    steady = sup.start(Child("steady", SLEEPER)).pid
    started = time.monotonic()

    assert sup.run() == 1  # returns only once it gave up

    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2 + 0.2 + 0.2
    assert _delays(lines) == [0.05, 0.1, 0.2, 0.2, 0.2]  # doubling, capped at max_delay
    assert [int(n) for n in re.findall(r"restart (\d) within", "\n".join(lines))] == [1, 2, 3, 4, 5]
    assert isinstance(sup.failure, ChildFailed)
    assert (sup.failure.name, sup.failure.returncode, sup.failure.restarts) == ("crasher", 3, 5)
    assert lines[-1] == (
        "giving up: crasher exited with code 3 after 5 restarts within 60 s; stopping every child"
    )
    assert _gone(steady)  # giving up stops everything


def test_restarts_older_than_the_window_do_not_count() -> None:
    # lives 0.15 s, longer than the window: every death finds no recent restart
    short_lived = [sys.executable, "-c", "import sys, time; time.sleep(0.15); sys.exit(1)"]
    lines: list[str] = []
    sup = Supervisor(RestartPolicy(first_delay=0.02, max_restarts=2, window=0.1), log=lines.append)
    sup.start(Child("flaky", short_lived))

    def five_deaths() -> bool:
        sup.check()
        return len(_delays(lines)) >= 5

    try:
        _wait_for(five_deaths, 10, "five deaths")
    finally:
        sup.stop()
    assert _delays(lines)[:5] == [0.02] * 5  # never backed off, never gave up


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_or_ctrl_c_stops_every_child_and_what_they_started(
    tmp_path: Path, sig: signal.Signals
) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    parent = (
        "import subprocess, time; print(subprocess.Popen(['sleep', '60']).pid, flush=True); "
        "time.sleep(60)"
    )
    script = f"""
import json, sys
from pathlib import Path
from cli.supervisor import Child, Supervisor, interrupt_on_sigterm
interrupt_on_sigterm()
sup, logs = Supervisor(stop_timeout=0.5), Path({str(tmp_path)!r})
sup.start(Child("sleeper", {SLEEPER!r}))
sup.start(Child("stubborn", [sys.executable, "-c", {stubborn!r}], log=logs / "s"))
sup.start(Child("parent", [sys.executable, "-c", {parent!r}], log=logs / "p"))
print(json.dumps([sup.pid(n) for n in ("sleeper", "stubborn", "parent")]), flush=True)
sys.exit(sup.run())
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        pids = json.loads(proc.stdout.readline())
        _wait_for(lambda: (tmp_path / "p").read_text().strip() != "", 10, "the grandchild")
        pids.append(int((tmp_path / "p").read_text()))
        _wait_for(lambda: (tmp_path / "s").read_text() == "ready\n", 10, "SIGTERM ignored")
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        said = proc.stdout.read()
        assert "interrupted: stopping every child" in said
        assert f"stubborn (pid {pids[1]}) did not stop in time: killing it" in said
        _wait_for(lambda: all(_gone(pid) for pid in pids), 5, f"{pids} gone")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


# ---- the real stack ------------------------------------------------------------------------------


def _child_pid(stack: int, marker: str) -> int | None:
    """The pid of the stack's child whose command line contains ``marker``."""
    for child in psutil.Process(stack).children():
        try:
            if marker in " ".join(child.cmdline()):
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.mark.timeout(300)
@pytest.mark.xdist_group("heavy")  # the whole stack: one at a time with the heavy tests
def test_agency_up_restarts_a_killed_worker_and_server_while_the_gateway_keeps_answering(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AGENCY_"))}
    api, gateway_port, portal = free_port(), free_port(), free_port()
    env.update(
        AGENCY_HOME=str(tmp_path / "home"),
        AGENCY_API_PORT=str(api),
        AGENCY_GATEWAY_PORT=str(gateway_port),
        AGENCY_PORTAL_PORT=str(portal),
        PREFECT_SERVER_UI_ENABLED="false",  # not under test; saves the server's UI build
        AGENCY_DEMO="false",  # the demo has its own test (tests/test_readme_quickstart.py)
    )
    healthz = f"http://127.0.0.1:{gateway_port}/healthz"
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        stack = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    descendants: list[psutil.Process] = []
    try:
        wait_http(healthz, timeout=200, proc=stack)
        gateway = _child_pid(stack.pid, "-m gateway")
        assert gateway is not None

        def comes_back(marker: str, extra_check: Callable[[], bool] = lambda: True) -> float:
            """SIGKILL the child; poll the gateway until a new one runs; return the seconds."""
            old = _child_pid(stack.pid, marker)
            assert old is not None, marker
            os.kill(old, signal.SIGKILL)
            killed = time.monotonic()
            while True:
                assert httpx.get(healthz, timeout=2).status_code == 200
                new = _child_pid(stack.pid, marker)
                if new not in (None, old) and extra_check():
                    return time.monotonic() - killed
                assert time.monotonic() - killed < 60, f"{marker} not back"
                time.sleep(0.1)

        def server_healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{api}/api/health", timeout=2).is_success
            except httpx.HTTPError:
                return False

        worker_back = comes_back("--type process")
        server_back = comes_back("server start", server_healthy)
        print(f"worker back in {worker_back:.1f} s, Prefect server healthy in {server_back:.1f} s")
        assert _child_pid(stack.pid, "-m gateway") == gateway  # the public door stayed up
        readyz = f"http://127.0.0.1:{gateway_port}/readyz"
        _wait_for(lambda: httpx.get(readyz, timeout=5).status_code == 200, 30, "gateway ready")
        log = (tmp_path / "home" / "logs" / "stack.log").read_text()
        killed = r" worker \(pid \d+\) exited with code -9 \(SIGKILL\); restarting in 1 s\n"
        assert re.search(killed, log), log
        assert re.search(r" worker restarted \(pid \d+; restart 1 within 60 s\)\n", log), log
        assert "prefect-server restarted" in log
        assert "agency up: worker restarted (pid" in out.read_text()  # and on stdout

        descendants = psutil.Process(stack.pid).children(recursive=True)
        assert len(descendants) >= 5
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=60) == 0
        _wait_for(lambda: all(_gone(p.pid) for p in descendants), 10, "every child gone")
    finally:
        if stack.poll() is None:
            stop_process(stack, timeout=30)
        for proc in descendants:
            if not _gone(proc.pid):
                proc.kill()
