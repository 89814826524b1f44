"""``docs/nodes.md`` is generated from the catalog and must not go stale."""

from __future__ import annotations

from nodes.catalog import BUILTIN
from nodes.docs import DOC_PATH, main, render


def test_the_committed_doc_matches_the_catalog() -> None:
    assert DOC_PATH.read_text() == render(), "docs/nodes.md is stale: run python -m nodes.docs"
    assert main(["--check"]) == 0


def test_every_node_is_documented_with_an_example() -> None:
    text = render()
    for kind, spec in BUILTIN.items():
        section = text.split(f"## `{kind}` — ", 1)[1].split("\n## ", 1)[0]
        assert spec.description in section
        assert "Example params:" in section and '"client": "acme"' in section
        for field in spec.input_model.model_fields:
            assert f"| `{field}` |" in section, (kind, field)
