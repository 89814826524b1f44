"""Make a release: the files one workflow needs at run time, content-addressed.

A release holds the runtime packages (``agency``, ``blocks``, ``nodes``, ``flows``) plus the
folder of the workflow's entrypoint when it lies elsewhere, and a ``release.json`` manifest.
From a git checkout the files come from a commit (``git archive``), and a working tree with
uncommitted changes to any of them is refused; ``worktree`` snapshots copy the files as they
are on disk (the implicit release of a first activation). The digest is the SHA-256 over the
sorted ``path\\0sha256(content)`` lines and the manifest, so equal code gives an equal release.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from agency.errors import InputInvalid

RUNTIME_PACKAGES: tuple[str, ...] = ("agency", "blocks", "nodes", "flows")
MANIFEST_FILE = "release.json"
_SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}

Source = Literal["git", "worktree"]


@dataclass(frozen=True)
class Snapshot:
    """A release built in a scratch folder, ready to be put into a store."""

    digest: str
    directory: Path
    manifest: dict[str, Any]
    files: int
    size_bytes: int
    source: Source
    commit: str | None = None
    paths: tuple[str, ...] = field(default=())


def involved_paths(entrypoint: str) -> list[str]:
    """Repository paths a workflow with ``entrypoint`` (``path/to/module.py:flow``) needs."""
    file = PurePosixPath(entrypoint.split(":", 1)[0])
    paths = list(RUNTIME_PACKAGES)
    if file.parts[0] not in RUNTIME_PACKAGES:
        folder = file.parent
        paths.append(str(folder) if str(folder) != "." else str(file))
        # the packages above the entrypoint's folder need their __init__.py to import it
        for parent in list(folder.parents)[:-1]:
            paths.append(str(parent / "__init__.py"))
    return paths


def _git(project: Path, *args: str) -> bytes:
    done = subprocess.run(
        ["git", "-C", str(project), *args], capture_output=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise InputInvalid(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def is_git_checkout(project: Path) -> bool:
    """True when ``project`` is the top of a git working tree."""
    done = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "--show-toplevel"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return done.returncode == 0 and Path(done.stdout.decode().strip()) == project.resolve()


def dirty_files(project: Path, paths: list[str]) -> list[str]:
    """Files under ``paths`` that differ from HEAD or are untracked (not ignored)."""
    out = _git(project, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return sorted(line[3:] for line in out.decode().splitlines() if line.strip())


def _skipped(relative: PurePosixPath) -> bool:
    return bool(_SKIP_PARTS.intersection(relative.parts)) or relative.suffix == ".pyc"


def _from_git(project: Path, paths: list[str], into: Path) -> str:
    commit = _git(project, "rev-parse", "HEAD").decode().strip()
    tracked = _git(project, "ls-tree", "-r", "--name-only", "HEAD", "--", *paths).decode()
    wanted = [p for p in paths if any(line.startswith(p) for line in tracked.splitlines())]
    archive = _git(project, "archive", "--format=tar", commit, "--", *wanted)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def _from_worktree(project: Path, paths: list[str], into: Path) -> None:
    for path in paths:
        source = project / path
        if source.is_file():
            targets = [source]
        elif source.is_dir():
            targets = [p for p in source.rglob("*") if p.is_file()]
        else:
            continue
        for file in targets:
            relative = PurePosixPath(file.relative_to(project).as_posix())
            if _skipped(relative):
                continue
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)


def _listing(directory: Path) -> list[str]:
    return sorted(
        str(relative)
        for file in directory.rglob("*")
        if file.is_file()
        and not _skipped(relative := PurePosixPath(file.relative_to(directory).as_posix()))
        and str(relative) != MANIFEST_FILE
    )


def digest_of(directory: Path) -> tuple[str, int, int]:
    """The content digest of a release folder, its file count and size in bytes.

    Covers the files ``release.json`` lists and ``release.json`` itself, so files a run
    writes beside its code (or bytecode caches) do not change it; a listed file that is
    missing or altered does.
    """
    manifest = directory / MANIFEST_FILE
    listed = json.loads(manifest.read_text()).get("files") if manifest.is_file() else None
    names = [*(listed if listed is not None else _listing(directory)), MANIFEST_FILE]
    lines: list[str] = []
    size = 0
    for name in sorted(names):
        file = directory / name
        data = file.read_bytes() if file.is_file() else b"\0missing"
        size += len(data)
        lines.append(f"{name}\0{hashlib.sha256(data).hexdigest()}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines), size


def build(
    project: Path,
    scratch: Path,
    manifest: dict[str, Any],
    *,
    source: Source,
) -> Snapshot:
    """Build the release of ``manifest["workflow"]`` from ``project`` into ``scratch``.

    ``source="git"`` takes HEAD's content and raises ``InputInvalid`` naming the files when any
    of them has uncommitted changes; ``"worktree"`` copies the files on disk.
    """
    paths = involved_paths(manifest["entrypoint"])
    scratch.mkdir(parents=True, exist_ok=True)
    commit: str | None = None
    if source == "git":
        if not is_git_checkout(project):
            raise InputInvalid(f"{project} is not a git checkout: cannot make a release from git.")
        dirty = dirty_files(project, paths)
        if dirty:
            shown = ", ".join(dirty[:10]) + (
                f" and {len(dirty) - 10} more" if len(dirty) > 10 else ""
            )
            raise InputInvalid(
                f"Uncommitted changes in files release '{manifest['workflow']}' needs: {shown}. "
                "Commit them (or stash them) first."
            )
        commit = _from_git(project, paths, scratch)
    else:
        _from_worktree(project, paths, scratch)
    entry_file = scratch / manifest["entrypoint"].split(":", 1)[0]
    if not entry_file.is_file():
        raise InputInvalid(
            f"The release of '{manifest['workflow']}' lacks its entrypoint "
            f"{manifest['entrypoint']} (not committed?)."
        )
    full = {
        **manifest,
        "source": source,
        "commit": commit,
        "paths": paths,
        "files": _listing(scratch),
    }
    (scratch / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    digest, files, size = digest_of(scratch)
    return Snapshot(digest, scratch, full, files, size, source, commit, tuple(paths))


__all__ = [
    "MANIFEST_FILE",
    "RUNTIME_PACKAGES",
    "Snapshot",
    "build",
    "digest_of",
    "dirty_files",
    "involved_paths",
    "is_git_checkout",
]
