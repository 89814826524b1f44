"""Spec files registered as catalog workflows, with manifests derived from the specs.

Registered specs live in ``settings.spec_dir`` (default ``flows/specs/``). Each becomes a flow
reachable as the entrypoint ``flows/spec_catalog.py:<attribute>`` (module ``__getattr__``), so
activation deploys it exactly like a prebuilt flow.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import Flow
from pydantic import BaseModel, ConfigDict, Field, create_model

from agency.settings import PROJECT_DIR, Settings, get_settings
from flows.manifest import CredentialRequirement, WorkflowManifest
from flows.outline import spec_outline
from flows.spec.model import WorkflowSpec
from flows.spec_runner import build_flow, load_spec

ENTRYPOINT_FILE = "flows/spec_catalog.py"
_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
}


def spec_dir(settings: Settings | None = None) -> Path:
    """Directory of registered specs."""
    settings = settings or get_settings()
    return settings.spec_dir or PROJECT_DIR / "flows" / "specs"


def attribute_name(spec_name: str) -> str:
    """Module attribute under which the spec's flow is exposed."""
    return "spec_" + spec_name.replace("-", "_")


def settings_model(spec: WorkflowSpec) -> type[BaseModel]:
    """A settings model from the spec's ``inputs`` schema; every field optional, because a
    webhook event may supply at run time what the settings leave out."""
    fields: dict[str, Any] = {}
    for name, prop in (spec.inputs.get("properties") or {}).items():
        py_type = _TYPES.get(prop.get("type", "string"), Any)
        fields[name] = (
            py_type | None,
            Field(
                default=prop.get("default"),
                title=prop.get("title", name),
                description=prop.get("description", f"Input '{name}'."),
            ),
        )
    model_name = "".join(p.capitalize() for p in spec.name.replace("-", "_").split("_"))
    return create_model(f"{model_name}Settings", __config__=ConfigDict(extra="forbid"), **fields)


def credential_requirements(spec: WorkflowSpec) -> tuple[CredentialRequirement, ...]:
    """One requirement per distinct (kind, name) the spec binds, naming the aliases using it."""
    aliases: dict[tuple[str, str], list[str]] = {}
    for alias, binding in spec.credentials.items():
        aliases.setdefault((binding.kind, binding.name), []).append(alias)
    return tuple(
        CredentialRequirement(
            kind=kind, name=name, description=f"Used by the spec as {', '.join(sorted(used))}."
        )
        for (kind, name), used in sorted(aliases.items())
    )


def manifest_for(spec: WorkflowSpec) -> WorkflowManifest:
    """The catalog manifest derived from a spec."""
    return WorkflowManifest(
        slug=spec.name,
        title=spec.title or spec.name.replace("-", " ").replace("_", " ").capitalize(),
        description=spec.description or f"Workflow spec {spec.name}.",
        version=spec.version,
        entrypoint=f"{ENTRYPOINT_FILE}:{attribute_name(spec.name)}",
        settings_model=settings_model(spec),
        credentials=credential_requirements(spec),
        triggers=tuple(t for t in spec.triggers if t in ("cron", "webhook", "manual"))
        or ("manual",),
        default_cron=spec.default_cron,
        accepts_batches="webhook" in spec.triggers,
        outline=spec_outline(spec),
    )


@lru_cache(maxsize=64)
def _load(path: Path, mtime: float) -> WorkflowSpec:
    return load_spec(path)


def registered_specs(settings: Settings | None = None) -> dict[str, WorkflowSpec]:
    """Every valid registered spec by name (an invalid file is skipped, never half-loaded)."""
    found: dict[str, WorkflowSpec] = {}
    directory = spec_dir(settings)
    for path in sorted(directory.glob("*.y*ml")) + sorted(directory.glob("*.json")):
        try:
            spec = _load(path, path.stat().st_mtime)
        except Exception:  # noqa: BLE001 - `agency spec validate` reports why
            continue
        found[spec.name] = spec
    return found


def register_spec(path: Path, settings: Settings | None = None) -> WorkflowManifest:
    """Validate a spec file and copy it into the spec directory; return its manifest."""
    spec = load_spec(path)
    directory = spec_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, directory / f"{spec.name}{path.suffix}")
    return manifest_for(spec)


def __getattr__(name: str) -> Flow[..., Any]:
    for spec in registered_specs().values():
        if attribute_name(spec.name) == name:
            return build_flow(spec)
    raise AttributeError(name)
