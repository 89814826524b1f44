"""Prefect pull steps that put a flow run inside its release (stdlib only: they run in the
flow-run process before any project code is imported).

A deployment of a pinned activation runs ``enter_release`` (make the folder, change into it,
put it first on ``sys.path``), then, for S3, prefect-aws's ``pull_from_s3``, then
``verify_release`` (the folder's content digest must equal the pinned one). A template
deployment of prefect.yaml names one step, ``run_release_steps``, that runs the steps its push
step got from the store (they differ between stores).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path
from typing import Any


def enter_release(directory: str) -> dict[str, str]:
    """Create ``directory`` if needed, make it the working directory and the first import path."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    # PYTHONPATH named it before it existed: drop the cached "no finder" verdict
    sys.path_importer_cache.pop(str(path), None)
    if sys.path[:1] != [str(path)]:
        sys.path.insert(0, str(path))
    importlib.invalidate_caches()
    return {"directory": str(path)}


def verify_release(directory: str, digest: str) -> dict[str, str]:
    """Refuse to run unless the folder holds exactly the release ``digest``."""
    from deployments.releases.snapshot import digest_of

    found = digest_of(Path(directory))[0]
    if found != digest:
        raise RuntimeError(
            f"Release folder {directory} does not match release {digest[:12]} "
            f"(found {found[:12]}); refusing to run altered code."
        )
    return {"directory": directory, "digest": digest}


def run_release_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Run a release store's pull steps in order (``{"fully.qualified.step": {inputs}}`` each,
    as :func:`deployments.releases.steps.push_release` returns them); returns their outputs."""
    from prefect.deployments.steps.core import run_steps

    return asyncio.run(run_steps(steps))


__all__ = ["enter_release", "run_release_steps", "verify_release"]
