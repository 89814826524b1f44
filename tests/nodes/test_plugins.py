"""Nodes from other installed packages: the ``agency.nodes`` entry-point group.

The test really installs ``tests/plugin_pkg`` with pip (into a private ``--target`` directory put
on ``sys.path``, so the shared venv stays untouched) and reads it through
``importlib.metadata`` like any installed distribution.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.commands.nodes import nodes_app
from nodes.catalog import BUILTIN, CATALOG, ENTRY_POINT_GROUP, get_node, reload_catalog

PLUGIN_SRC = Path(__file__).resolve().parent.parent / "plugin_pkg"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` the plugin package into a fresh directory (once per module)."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(PLUGIN_SRC, src)  # builds write egg-info beside the sources
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return site


@pytest.fixture
def installed(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    yield
    monkeypatch.undo()
    sys.modules.pop("agency_fax_node", None)
    importlib.invalidate_caches()
    reload_catalog()


@pytest.mark.usefixtures("installed")
def test_an_installed_plugin_node_joins_the_catalog(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="nodes.catalog"):
        reload_catalog()

    spec = get_node("fax")
    assert spec.task.name == "fax" and spec.credential_kind is None
    assert spec.input_model.model_validate(spec.example).number == "+33 1 23 45 67 89"
    assert spec.task.fn(spec.input_model.model_validate(spec.example)).pages == 1
    assert set(CATALOG) == set(BUILTIN) | {"fax"}
    # the broken entry point is reported and skipped, not fatal
    assert any("'broken'" in r.getMessage() for r in caplog.records)

    result = CliRunner().invoke(nodes_app, [])
    assert result.exit_code == 0, result.output
    assert "fax\t-\tFax: Send a fax (example plugin node)." in result.output.splitlines()
    shown = CliRunner().invoke(nodes_app, ["show", "fax"])
    assert json.loads(shown.output)["input_schema"]["required"] == ["client", "number", "text"]


def test_without_the_plugin_the_catalog_is_the_built_in_nodes() -> None:
    from importlib.metadata import entry_points

    from cli.main import app

    reload_catalog()

    assert set(CATALOG) == set(BUILTIN)
    assert [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)] == []
    listed = CliRunner().invoke(app, ["nodes"])
    assert listed.exit_code == 0, listed.output
    assert [line.split("\t")[0] for line in listed.output.splitlines()] == sorted(BUILTIN)
    unknown = CliRunner().invoke(app, ["nodes", "show", "fax"])
    assert unknown.exit_code == 2 and "Unknown node kind 'fax'" in unknown.output
