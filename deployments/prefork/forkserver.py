"""Worker side of a warm template: start it, ask it to fork, learn when children end.

Speaks the line protocol described in ``deployments.prefork.template`` over the template's
stdin/stdout; the template's stderr (and its children's output) goes to the worker's stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["Template", "TemplateError", "TEMPLATE_LOST"]

#: Exit code reported for a child whose template vanished before saying how the child ended.
TEMPLATE_LOST = 255


class TemplateError(RuntimeError):
    """The template could not start, or died, before forking the requested child."""


def _stamp(files: list[str]) -> tuple[tuple[int, int], ...]:
    stamps = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append((-1, -1))
        else:
            stamps.append((st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class Template:
    """One ``python -m deployments.prefork.template`` process preloaded with ``preload``."""

    def __init__(
        self, preload: tuple[str, ...], cwd: Path | None = None, release: str | None = None
    ) -> None:
        self.preload = preload
        self.cwd = cwd
        # a release folder: the template (so every child) imports that release's code
        self.release = release
        self.pid: int | None = None
        self.files: list[str] = []
        self._stamps: tuple[tuple[int, int], ...] = ()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0
        self._forks: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._retired = False

    async def start(self) -> None:
        """Start the template and wait until it has imported its modules."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "deployments.prefork.template",
            *self.preload,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=self.release or self.cwd,
            env=self._env(),
            limit=2**24,
        )
        assert self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        message = json.loads(line) if line.strip() else {"error": "template exited on start"}
        if not message.get("ready"):
            await self._proc.wait()
            raise TemplateError(str(message.get("error")))
        self.pid, self.files = message["pid"], message["files"]
        self._stamps = _stamp(self.files)
        self._reader = asyncio.create_task(self._read())

    def _env(self) -> dict[str, str] | None:
        if self.release is None:
            return None
        rest = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [self.release, rest]))}

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and not self._retired

    @property
    def finished(self) -> bool:
        """Whether the template process has exited."""
        return self._proc is not None and self._proc.returncode is not None

    def stale(self) -> bool:
        """Whether a source file the template imported changed since it started."""
        return _stamp(self.files) != self._stamps

    async def fork(
        self,
        flow_run_id: str,
        env: dict[str, str],
        cwd: str | None,
        *,
        csrf: bool = True,
        reads: dict[str, Any] | None = None,
    ) -> int:
        """Fork a child that runs the flow run; return its pid (``csrf``, ``reads``: see
        ``run_child``)."""
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise TemplateError("template is not running")
        self._seq += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forks[self._seq] = future
        request = {
            "seq": self._seq,
            "flow_run_id": flow_run_id,
            "env": env,
            "cwd": cwd,
            "csrf": csrf,
            "reads": reads or {},
        }
        self._proc.stdin.write((json.dumps(request) + "\n").encode())
        await self._proc.stdin.drain()
        return await future

    def exited(self, pid: int) -> asyncio.Future[int]:
        """Resolves with the child's exit code (minus the signal number if a signal ended it),
        or ``TEMPLATE_LOST`` once the template has exited without saying."""
        return self._exit_future(pid)

    async def wait(self, pid: int) -> int:
        """The child's exit code, as :meth:`exited` (cancelling the wait leaves that intact)."""
        return await asyncio.shield(self._exit_future(pid))

    def _exit_future(self, pid: int) -> asyncio.Future[int]:
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while True:
                try:
                    line = await self._proc.stdout.readline()
                except asyncio.CancelledError:
                    # the worker is stopping: its event loop waits for this reader, which
                    # reads on until the template exits after its children (each exit ends
                    # that run's heartbeats); a second signal kills the worker instead
                    continue
                if not line:
                    break
                message: dict[str, Any] = json.loads(line)
                if "seq" in message:
                    self._exit_future(message["pid"])
                    self._forks.pop(message["seq"]).set_result(message["pid"])
                elif "exited" in message:
                    future = self._exit_future(message["exited"])
                    if not future.done():
                        future.set_result(int(message["code"]))
        finally:
            for fork in self._forks.values():
                if not fork.done():
                    fork.set_exception(TemplateError("template died before forking"))
            for future in self._exits.values():
                if not future.done():
                    future.set_result(TEMPLATE_LOST)
            await self._proc.wait()

    def retire(self) -> None:
        """Stop forking; the template exits once its running children have ended."""
        self._retired = True
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()

    async def stop(self, timeout: float = 30) -> None:
        """Retire and wait for the template to exit (terminate it after ``timeout``)."""
        self.retire()
        if self._proc is None:
            return
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            await self._reader
