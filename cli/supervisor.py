"""Keep the child processes of ``agency up`` running: restart the ones that die, with backoff.

Build a :class:`Supervisor`, :meth:`~Supervisor.start` each :class:`Child`, then call
:meth:`~Supervisor.run`. It returns 0 after Ctrl-C or SIGTERM (see :func:`interrupt_on_sigterm`)
and 1 once a child keeps failing (:class:`RestartPolicy`); either way every child is stopped first.
Each child runs in its own process group, so a dead child's leftover descendants are killed
before it restarts (a port they hold would fail the restart) and a terminal's Ctrl-C reaches the
supervisor alone, which then stops the children in reverse start order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Child:
    """A named child process: command line, environment (``None``: ours), working directory, and
    the file its stdout and stderr are appended to (``None``: ours)."""

    name: str
    args: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    log: Path | None = None


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a dead child after ``first_delay`` s, doubling per recent restart up to
    ``max_delay``; give up when it dies once more after ``max_restarts`` restarts within
    ``window`` s. A child that ran ``window`` s without a restart starts again at ``first_delay``.
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    max_restarts: int = 5
    window: float = 60.0

    def delay(self, recent_restarts: int) -> float:
        """Seconds to wait before the next restart of a child restarted this often recently."""
        return min(self.first_delay * 2**recent_restarts, self.max_delay)


class ChildFailed(Exception):
    """A child kept failing: its ``name``, last ``returncode`` and ``restarts`` in the window."""

    def __init__(self, name: str, returncode: int, restarts: int, window: float) -> None:
        self.name, self.returncode, self.restarts = name, returncode, restarts
        super().__init__(
            f"{name} exited with {describe_exit(returncode)} after {restarts} restarts "
            f"within {window:g} s"
        )


def describe_exit(returncode: int) -> str:
    """``code 1``, or ``code -9 (SIGKILL)`` for a child killed by a signal."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"code {returncode} ({signal.Signals(-returncode).name})"
    return f"code {returncode}"


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise ``KeyboardInterrupt`` like Ctrl-C (call from the main thread)."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass
class _Slot:
    child: Child
    proc: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)  # clock times of recent restarts
    due: float | None = None  # when a dead child starts again


class Supervisor:
    """Named children kept running under a :class:`RestartPolicy`.

    ``log`` gets one line per death, restart and stop (default: printed); ``poll_seconds`` is how
    often :meth:`run` looks; ``stop_timeout`` is how long :meth:`stop` waits after SIGTERM before
    SIGKILL.
    """

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        *,
        log: Callable[[str], None] = _print,
        poll_seconds: float = 0.25,
        stop_timeout: float = 15.0,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.log = log
        self.poll_seconds = poll_seconds
        self.stop_timeout = stop_timeout
        self.failure: ChildFailed | None = None
        self._slots: dict[str, _Slot] = {}

    def start(self, child: Child) -> subprocess.Popen[bytes]:
        """Start ``child`` now and keep it running from then on; return its process."""
        if child.name in self._slots:
            raise ValueError(f"a child named {child.name!r} is already supervised")
        slot = self._slots[child.name] = _Slot(child)
        slot.proc = self._spawn(child)
        return slot.proc

    def pid(self, name: str) -> int | None:
        """The pid of child ``name``, or ``None`` while it waits for its restart."""
        proc = self._slots[name].proc
        return None if proc is None else proc.pid

    def check(self) -> None:
        """Reap dead children and restart those that are due; raise :class:`ChildFailed` when one
        has failed too often. :meth:`run` calls this in a loop; call it while waiting on a child.
        """
        policy = self.policy
        for name, slot in self._slots.items():
            now = time.monotonic()
            if slot.proc is not None and _exited(slot.proc):
                pid, code = slot.proc.pid, _reap(slot.proc)
                slot.proc = None
                while slot.restarts and slot.restarts[0] <= now - policy.window:
                    slot.restarts.popleft()
                if len(slot.restarts) >= policy.max_restarts:
                    raise ChildFailed(name, code, len(slot.restarts), policy.window)
                delay = policy.delay(len(slot.restarts))
                slot.due = now + delay
                self.log(
                    f"{name} (pid {pid}) exited with {describe_exit(code)}; "
                    f"restarting in {delay:g} s"
                )
            if slot.proc is None and slot.due is not None and now >= slot.due:
                slot.restarts.append(now)
                slot.due = None
                slot.proc = self._spawn(slot.child)
                self.log(
                    f"{name} restarted (pid {slot.proc.pid}; restart {len(slot.restarts)} "
                    f"within {policy.window:g} s)"
                )

    def run(self) -> int:
        """Supervise until Ctrl-C / SIGTERM (return 0) or a child fails too often (log which and
        why, keep it in :attr:`failure`, return 1); stop every child before returning."""
        try:
            while True:
                self.check()
                time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            self.log("interrupted: stopping every child")
            return 0
        except ChildFailed as exc:
            self.failure = exc
            self.log(f"giving up: {exc}; stopping every child")
            return 1
        finally:
            self.stop()

    def stop(self) -> None:
        """SIGTERM every child in reverse start order, SIGKILL what is left after
        ``stop_timeout`` s (or at once on a second Ctrl-C / SIGTERM), and kill their groups."""
        procs = {n: s.proc for n, s in reversed(self._slots.items()) if s.proc is not None}
        for slot in self._slots.values():
            slot.proc, slot.due = None, None
        try:
            for proc in procs.values():
                if not _exited(proc):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline and not all(map(_exited, procs.values())):
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C / SIGTERM: kill now
        for name, proc in procs.items():
            if not _exited(proc):
                self.log(f"{name} (pid {proc.pid}) did not stop in time: killing it")
            _reap(proc)

    def _spawn(self, child: Child) -> subprocess.Popen[bytes]:
        with contextlib.ExitStack() as files:
            out = None if child.log is None else files.enter_context(child.log.open("ab"))
            return subprocess.Popen(
                list(child.args),
                env=None if child.env is None else dict(child.env),
                cwd=child.cwd,
                stdin=subprocess.DEVNULL,  # in a background process group, a read would stop it
                stdout=out,
                stderr=None if out is None else subprocess.STDOUT,
                process_group=0,
            )


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` has exited, leaving it unreaped: until it is reaped its pid, which is also
    its process group's id, cannot be reused, so killing that group hits only its own."""
    if proc.returncode is not None:
        return True
    if not hasattr(os, "waitid"):  # pragma: no cover - e.g. macOS before Python 3.13
        return proc.poll() is not None
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _reap(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL ``proc``'s process group (the child and what it left behind), reap, return code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()
