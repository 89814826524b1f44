"""The warm template process: imports Prefect and the project once, forks one child per run.

Run by the worker as ``python -m deployments.prefork.template MODULE...``. Protocol, one JSON
object per line: the template writes ``{"ready": true, "pid", "files"}`` once its modules are
imported (``files``: the project source it loaded, so the worker can tell when it is stale), or
``{"error": ...}`` and exits. Then it reads ``{"seq", "flow_run_id", "env", "cwd", "csrf"}``
requests on stdin and answers ``{"seq", "pid"}`` after each fork, and ``{"exited": pid,
"code": n}`` when a child ends (``code`` is the exit status, or minus the signal number). When
stdin closes it stops forking, reports its remaining children as they end, then exits.

The template itself starts no thread, opens no connection and holds no client data: forking a
process with threads can leave a lock held forever in the child.
"""

from __future__ import annotations

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

__all__ = ["project_files", "serve"]


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


def _child(request: dict[str, Any]) -> int:
    # the child must not share the template's protocol pipes, wake-up fd or signal handlers
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
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
    )


def serve(preload: list[str]) -> int:
    """Import ``preload``, answer fork requests until stdin closes; return an exit code."""
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
    # its stdin instead, after its children, so their runs are not reported as crashed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    _write({"ready": True, "pid": os.getpid(), "files": project_files()})

    children: set[int] = set()
    accepting, buffer = True, b""

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

    while accepting or children:
        for key, _ in selector.select(timeout=5):
            if key.fd == wake_r:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
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
                pid = os.fork()
                if pid == 0:
                    code = 70
                    try:
                        selector.close()
                        os.close(wake_r)
                        os.close(wake_w)
                        code = _child(request)
                    except BaseException:  # noqa: BLE001 - the child must never return here
                        traceback.print_exc()
                    finally:
                        os._exit(code)
                children.add(pid)
                _write({"seq": request["seq"], "pid": pid})
        reap()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
