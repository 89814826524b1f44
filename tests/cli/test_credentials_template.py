"""``agency credentials template --kind K``: an example JSON for every credential kind, built
from the kind's model, that ``credentials set --from-file`` accepts once the <...> are filled."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from blocks.kinds import CREDENTIAL_KINDS, kind_model, parse_credential
from cli.main import app


@pytest.mark.parametrize("kind", sorted(CREDENTIAL_KINDS))
def test_every_kind_has_a_template_with_every_field_that_parses(kind: str) -> None:
    result = CliRunner().invoke(app, ["credentials", "template", "--kind", kind])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == list(kind_model(kind).model_fields)  # every field, in model order
    parse_credential(kind, data)  # valid as printed
    for name in kind_model(kind).secret_fields():
        assert str(data[name]).startswith("<")  # a secret is only ever a placeholder


def test_the_smtp_template_takes_defaults_and_examples_from_the_model() -> None:
    data = json.loads(CliRunner().invoke(app, ["credentials", "template", "--kind", "smtp"]).output)
    assert data["port"] == 587 and data["security"] == "starttls"  # the model's defaults
    assert data["host"] == "smtp.example.com"  # "e.g. smtp.example.com" in its description
    assert data["from_address"] == "<From address>"  # required, no example: its title


def test_an_unknown_kind_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(app, ["credentials", "template", "--kind", "smtpp"])
    assert result.exit_code == 2
    assert "Unknown credential kind 'smtpp'" in result.output
    assert "Traceback" not in result.output
