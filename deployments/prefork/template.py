"""The warm template process: imports Prefect and the project once, forks one child per run.

Run by the worker as ``python -m deployments.prefork.template MODULE...``. Protocol, one JSON
object per line: the template writes ``{"ready": true, "pid", "files"}`` once its modules are
imported (``files``: the project source it loaded, so the worker can tell when it is stale), or
``{"error": ...}`` and exits. Then it reads ``{"seq", "flow_run_id", "env", "cwd", "csrf",
"reads"}`` requests on stdin and answers ``{"seq", "pid"}`` after each fork, and ``{"exited": pid,
"code": n}`` when a child ends (``code`` is the exit status, or minus the signal number). When
stdin closes it stops forking, reports its remaining children as they end, then exits.

Children never outlive the worker: a child's run gets its heartbeats from the worker, so a run
left executing after the worker died would be crashed and rescheduled while it still runs. When
the worker process is gone (the template's parent changed, or writing to it fails), the template
SIGKILLs every child's process group and exits. On Linux the kernel tells it at once
(``prctl(PR_SET_PDEATHSIG)``), and kills a child whose template died; elsewhere the template
notices within :data:`ORPHAN_CHECK_SECONDS`.

The template itself starts no thread, opens no connection and holds no client data: forking a
process with threads can leave a lock held forever in the child.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import selectors
import signal
import sys
import sysconfig
import threading
import traceback
from typing import Any

__all__ = ["ORPHAN_CHECK_SECONDS", "PARENT_DIED", "die_with_parent", "project_files", "serve"]

#: Sent by Linux to the template when the worker exits; it only wakes the template's loop.
PARENT_DIED = signal.SIGUSR2
#: How often the template checks that the worker is still its parent (when not woken earlier).
ORPHAN_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> bool:
    """Have Linux send ``signum`` to this process when its parent exits; False where the call
    (``prctl(PR_SET_PDEATHSIG, signum)``) is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        return bool(prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _write(message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def project_files() -> list[str]:
    """Source files of the loaded modules that are not part of Python or an installed package."""
    skip = tuple(
        os.path.realpath(p) + os.sep
        for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    )
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py"):
            real = os.path.realpath(path)
            if not real.startswith(skip):
                files.add(real)
    return sorted(files)


def _child(request: dict[str, Any], template_pid: int) -> int:
    die_with_parent(signal.SIGKILL)
    if os.getppid() != template_pid:  # the template died before the line above
        return 1
    # the child must not share the template's protocol pipes, wake-up fd or signal handlers
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(PARENT_DIED, signal.SIG_IGN)  # the same signal tells a child of a suspension
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)  # the worker signals the whole group: the run and anything it starts
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    from deployments.prefork.child import run_child

    return run_child(
        request["flow_run_id"],
        request.get("env") or {},
        request.get("cwd"),
        csrf=request.get("csrf", True),
        reads=request.get("reads"),
    )


def _kill_all(children: set[int]) -> None:
    """SIGKILL each child and its process group (what its run started), then reap them."""
    for pid in children:
        for kill in (os.kill, os.killpg):  # a child only just forked has no group of its own yet
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def serve(preload: list[str]) -> int:
    """Import ``preload``, answer fork requests until stdin closes; return an exit code."""
    worker = os.getppid()
    # before the slow imports: a worker that dies meanwhile must not leave this process behind
    signal.signal(PARENT_DIED, lambda *_: None)
    die_with_parent(PARENT_DIED)
    try:
        importlib.import_module("deployments.prefork.child")  # Prefect and its flow engine
        for name in preload:
            importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, which fails the run
        _write({"error": f"preloading failed: {type(exc).__name__}: {exc}"})
        return 1
    from deployments.prefork.child import prepare_template

    prepare_template()
    if threading.active_count() > 1:
        names = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        _write({"error": f"preloading started threads {names}; refusing to fork"})
        return 1

    # Ctrl-C in the worker's terminal reaches the template too; it ends when the worker closes
    # its stdin instead, after its children (or kills them once the worker has exited)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: set[int] = set()
    template = os.getpid()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            _write({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def fork(request: dict[str, Any]) -> None:
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                selector.close()
                os.close(wake_r)
                os.close(wake_w)
                code = _child(request, template)
            except BaseException:  # noqa: BLE001 - the child must never return here
                traceback.print_exc()
            finally:
                os._exit(code)
        children.add(pid)
        _write({"seq": request["seq"], "pid": pid})

    accepting, buffer, orphaned = True, b"", False
    try:
        _write({"ready": True, "pid": template, "files": project_files()})
        while accepting or children:
            if os.getppid() != worker:
                orphaned = True
                break
            for key, _ in selector.select(timeout=ORPHAN_CHECK_SECONDS):
                if key.fd == wake_r:
                    _drain(wake_r)
                    continue
                data = os.read(0, 65536)
                if not data:
                    accepting = False
                    selector.unregister(0)
                    continue
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    try:
                        request = json.loads(line)
                        request["seq"]
                    except (ValueError, TypeError, KeyError):
                        print(f"prefork template: ignoring request {line[:200]!r}", file=sys.stderr)
                        continue
                    fork(request)
            reap()
    except BrokenPipeError:  # the worker stopped reading: it is gone
        orphaned = True
    if orphaned:  # nobody watches these runs any more, nor sends their heartbeats
        _kill_all(children)
        return 1
    return 0


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 512):
                return
        except BlockingIOError:
            return


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
