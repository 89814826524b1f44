"""The house keeps its layers: every import points down, and no face imports another face.

Each module's imports (module level and inside functions) are read with ``ast`` and mapped to a
layer by the one table below; the longest matching module prefix wins. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module prefix -> (rank, face name or None). Higher ranks may import lower ranks only; faces
#: share the top rank and may not import one another.
LAYERS: dict[str, tuple[int, str | None]] = {
    "agency": (0, None),  # core: settings, errors, redaction, logging, platform DB
    "blocks": (1, None),
    "nodes": (2, None),
    "flows": (3, None),
    "deployments": (4, None),
    "services": (5, None),
    "cli": (6, "cli"),
    "portal": (6, "portal"),
    "gateway": (6, "gateway"),
    "exporter": (6, "exporter"),
}

PACKAGES = sorted({prefix.split(".")[0] for prefix in LAYERS})


def layer_of(module: str) -> tuple[str, tuple[int, str | None]] | None:
    """The table's longest prefix of ``module`` and its layer, or None for third parties."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return prefix, LAYERS[prefix]
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``(line, module)`` the code imports, relative imports resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                keep = len(anchor) - node.level + (1 if is_package else 0)
                base = ".".join(anchor[:keep] + ([base] if base else []))
            # ``from pkg import sub`` may name a submodule: check both the package and each name
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def violations() -> list[str]:
    """One line per import against the layers: ``file:line imports X from ...``."""
    problems: dict[tuple[str, str], str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []:
            module = module_name(path)
            own = layer_of(module)
            assert own is not None, f"{module} is in no layer of the table"
            _, (rank, face) = own
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, target in imported_modules(tree, module, path.name == "__init__.py"):
                other = layer_of(target)
                if other is None:
                    continue
                prefix, (other_rank, other_face) = other
                where = f"{path.relative_to(ROOT)}:{line}"
                if other_rank > rank:
                    why = f"{where} imports {target} from a higher layer ({prefix})"
                elif face and other_face and face != other_face:
                    why = f"{where} imports {target} from another face ({prefix})"
                else:
                    continue
                problems.setdefault((where, prefix), why)
    return sorted(problems.values())


def test_every_import_points_down_and_faces_stay_apart() -> None:
    found = violations()
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_every_package_of_the_project_is_in_the_table() -> None:
    """A new top-level package must be placed in the house before it can be imported."""
    top = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests", "benchmarks"}
    }
    assert top <= set(PACKAGES), f"packages missing from LAYERS: {sorted(top - set(PACKAGES))}"


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The reader sees imports inside functions and resolves relative ones."""
    source = "def f():\n    from ..services import audit\n"
    tree = ast.parse(source)
    found = imported_modules(tree, "nodes.thing", is_package=False)
    assert (2, "services.audit") in found
    layer = layer_of("services.audit")
    assert layer is not None and layer[1][0] > LAYERS["nodes"][0]
