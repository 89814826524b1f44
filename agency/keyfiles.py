"""Keys the embedded platform generates once and keeps in files of its home (mode 0600)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def secret_file(path: Path, make: Callable[[], str]) -> str:
    """The value in ``path``, written once by ``make()`` with mode 0600 (racing writers agree:
    the first one wins and every caller reads what it wrote)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
    os.chmod(path, 0o600)
    return path.read_text().strip()
