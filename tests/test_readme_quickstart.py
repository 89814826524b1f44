"""The README's quickstart works as written: ``make up``'s stack (``agency up``) on a fresh
``AGENCY_HOME`` creates the demo, whose first runs are COMPLETED with their emails in the demo
inbox; then every line of the README's quickstart block runs in a second shell that knows only
``AGENCY_HOME`` (the stack's settings come from ``<home>/stack-settings.json``). Screenshots of
the demo's portal pages go to ``build/test-artifacts/portal/``.

Everything is real: the stack's processes, the demo services (SMTP mail catcher, sample API,
demo model), Chromium. Only ports differ from the defaults (free ones), so this runs beside
another stack; ``make up`` itself is ``agency up`` after ``pip install`` (the Makefile is
checked for that, the install is not repeated).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures._browser import ARTIFACTS, launch_chromium
from tests.fixtures._net import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
UP_TIMEOUT = 420  # s: a loaded 2-core machine takes ~3 min to start the stack
WAIT = 60_000  # ms per portal step


def quickstart_blocks() -> tuple[list[str], list[str]]:
    """The first-shell block (the ``make up`` one) and the quickstart block of the README."""
    text = README.read_text()
    section = text[text.index("## Quickstart") :]
    section = section[: section.index("\n## ", 5)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    marker = section.index("<!-- quickstart")
    after = re.search(r"```bash\n(.*?)```", section[marker:], re.DOTALL)
    assert after is not None, "no bash block after the <!-- quickstart --> marker"

    def lines(block: str) -> list[str]:
        out = []
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
        return out

    return lines(blocks[0]), lines(after.group(1))


def test_the_readme_quickstart_parses() -> None:
    first, second = quickstart_blocks()
    assert first == ["make up"]
    assert second[0] == "source .venv/bin/activate"
    assert all(shlex.split(line)[0] == "agency" for line in second[1:])
    recipe = (ROOT / "Makefile").read_text().split("\nup:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/agency up" in recipe  # `make up` is `agency up` once installed


@contextmanager
def _stack(home: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    ports = {name: free_port() for name in ("API", "GATEWAY", "PORTAL", "DEMO_SMTP", "DEMO_HTTP")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AGENCY_"))}
    env.update({f"AGENCY_{name}_PORT": str(port) for name, port in ports.items()})
    env.update(AGENCY_HOME=str(home), PREFECT_SERVER_UI_ENABLED="false")
    with log.open("wb") as sink:
        stack = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield stack, ports
    finally:
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)
            try:
                stack.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop_process(stack, timeout=10)


def _second_shell(home: Path) -> dict[str, str]:
    """A new shell after ``source .venv/bin/activate``: no PREFECT_/AGENCY_ variable but the
    home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AGENCY_"))}
    venv = ROOT / ".venv"
    env.update(
        AGENCY_HOME=str(home),
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _run(line: str, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _shots(url: str, out: str) -> None:
    """Sign in as the demo's agency user and client user; screenshot the demo's pages."""
    from playwright.sync_api import sync_playwright

    users = dict(re.findall(r"(?:agency|client) user\s+(\S+)\s+password (\S+)", out))
    assert len(users) == 2, out
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for email, password in users.items():
                page: Any = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(WAIT)
                page.goto(url)
                page.get_by_label("Email", exact=True).fill(email)
                page.get_by_label("Password", exact=True).fill(password)
                page.get_by_role("button", name="Sign in").click()
                titles = (
                    [("All runs", "demo-all-runs"), ("Demo inbox", "demo-inbox")]
                    if email.startswith("agency@")
                    else [("Runs", "demo-client-runs"), ("Workflows", "demo-client-workflows")]
                )
                page.get_by_test_id("stSidebarNav").wait_for()
                for title, name in titles:
                    page.get_by_test_id("stSidebarNav").get_by_role(
                        "link", name=title, exact=True
                    ).click()
                    page.get_by_role("heading", name=title, level=1).wait_for()
                    page.get_by_test_id("stStatusWidget").wait_for(state="hidden")
                    if title == "Demo inbox":
                        page.get_by_text("Demo Bakery: your digest").first.wait_for()
                    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
                page.close()
        finally:
            browser.close()


@pytest.mark.timeout(1500)
@pytest.mark.xdist_group("heavy")  # the whole stack: one at a time with the heavy tests
def test_the_readme_quickstart_runs_as_written_on_a_fresh_home(tmp_path: Path) -> None:
    _, quickstart = quickstart_blocks()
    home, log = tmp_path / "home", tmp_path / "up.out"
    began = time.monotonic()
    with _stack(home, log) as (stack, ports):
        while "agency platform is up" not in log.read_text(errors="replace"):
            assert stack.poll() is None, log.read_text()
            assert time.monotonic() - began < UP_TIMEOUT, log.read_text()
            time.sleep(1)
        up = time.monotonic() - began
        out = log.read_text()
        assert "demo created (passwords are shown this once)" in out, out
        assert re.search(r"\[\s*[\d.]+ s\] Prefect server healthy", out)  # timed steps
        for where in ("Prefect UI", "demo inbox", "agency demo send-webhook", "demo users"):
            assert where in out, where
        shell = _second_shell(home)
        assert quickstart[0] == "source .venv/bin/activate"
        assert (ROOT / ".venv" / "bin" / "activate").is_file()

        # "run `agency demo status` again until both first runs say COMPLETED"
        status = quickstart[1]
        assert status == "agency demo status"
        while True:
            shown = _run(status, shell)
            runs = [r for r in shown.splitlines() if r.startswith("run ")]
            mails = [m for m in shown.splitlines() if m.startswith("email ")]
            done = [r for r in runs if "\tCOMPLETED\t" in r]
            if len(done) >= 2 and len(mails) >= 2:
                break
            assert not [r for r in runs if "\tFAILED\t" in r or "\tCRASHED\t" in r], shown
            assert time.monotonic() - began < UP_TIMEOUT + 300, shown
            time.sleep(3)
        finished = time.monotonic() - began
        print(f"stack up in {up:.0f} s; demo runs COMPLETED, emails caught at {finished:.0f} s")
        assert {"workflow:daily_digest", "workflow:review_sentiment"} <= {
            tag for r in done for tag in r.split("\t")[2].split(", ")
        }
        assert "Demo Bakery: your digest" in shown and "Demo Bakery: review sentiment" in shown

        _shots(f"http://127.0.0.1:{ports['PORTAL']}", out)

        for line in quickstart[2:]:
            printed = _run(line, shell)
            argv = shlex.split(line)
            if argv[1:3] == ["demo", "send-webhook"]:
                assert "webhook accepted: delivery" in printed
            elif argv[1] == "run":
                assert "finished: COMPLETED" in printed
            elif argv[1:3] == ["credentials", "template"]:
                assert '"host"' in printed
            elif argv[1:] == ["demo", "--reset"]:
                assert "client demo offboarded" in printed
        assert "demo" not in _run("agency client list", shell).split()
        assert '"demo"' not in (home / "egress-clients.json").read_text()
        assert not (home / "demo").exists()
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=90) == 0
