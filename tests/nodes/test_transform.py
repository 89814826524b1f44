"""``nodes/transform.py``: sandboxed jinja2 templates and JMESPath, never Python eval."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agency.errors import PermanentNodeError
from nodes import TransformInput, TransformOutput, transform
from tests.nodes import run_node

DATA = {"leads": [{"email": "a@example.com", "score": 91}, {"email": "b@example.com", "score": 40}]}


@pytest.mark.usefixtures("prefect_server")
def test_jmespath_query_as_a_task() -> None:
    run = run_node(
        transform,
        TransformInput(client="acme", data=DATA, expression="leads[?score > `80`].email"),
    )

    assert run.result == TransformOutput(value=["a@example.com"])


def test_template_to_text_and_json() -> None:
    text = transform.fn(
        TransformInput(
            client="acme",
            data=DATA,
            template="{% for l in leads %}{{ l.email }}={{ l.score }};{% endfor %}",
        )
    )
    assert text.value == "a@example.com=91;b@example.com=40;"

    as_json = transform.fn(
        TransformInput(
            client="acme",
            data=DATA,
            template='{"top": {{ leads[0] | tojson }}, "n": {{ data.leads | length }}}',
            output="json",
        )
    )
    assert as_json.value == {"top": DATA["leads"][0], "n": 2}


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ leads.__class__ }}{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_the_sandbox_refuses_python_internals(template: str) -> None:
    with pytest.raises(PermanentNodeError, match="cannot be rendered"):
        transform.fn(TransformInput(client="acme", data=DATA, template=template))


def test_undefined_names_and_bad_json_fail_clearly() -> None:
    with pytest.raises(PermanentNodeError, match="'nope' is undefined"):
        transform.fn(TransformInput(client="acme", data=DATA, template="{{ nope }}"))
    with pytest.raises(PermanentNodeError, match="not valid JSON"):
        transform.fn(TransformInput(client="acme", data=DATA, template="{x", output="json"))


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"template": "{{ x", "data": {}}, ("template",)),
        ({"expression": "leads[?", "data": {}}, ("expression",)),
        ({"data": {}}, ()),
        ({"template": "a", "expression": "b"}, ()),
    ],
)
def test_bad_params_fail_validation(params: dict[str, object], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        TransformInput.model_validate({"client": "acme", **params})

    assert info.value.errors()[0]["loc"] == loc
