"""``nodes/route.py``: conditions in a sandbox, first match wins, default otherwise."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agency.errors import PermanentNodeError
from nodes import RouteInput, RouteOutput, route
from tests.nodes import run_node

CASES = [
    {"branch": "hot", "when": "score >= 80 and country in ['FR', 'DE']"},
    {"branch": "warm", "when": "score >= 50"},
]


@pytest.mark.usefixtures("prefect_server")
def test_the_branch_taken_is_returned_as_a_task() -> None:
    run = run_node(
        route, RouteInput(client="acme", data={"score": 91, "country": "FR"}, cases=CASES)
    )

    assert run.result == RouteOutput(branch="hot", matched=True)


@pytest.mark.parametrize(
    ("data", "branch", "matched"),
    [
        ({"score": 91, "country": "US"}, "warm", True),
        ({"score": 60, "country": "FR"}, "warm", True),
        ({"score": 10, "country": "FR"}, "cold", False),
    ],
)
def test_first_match_then_default(data: dict[str, object], branch: str, matched: bool) -> None:
    out = route.fn(RouteInput(client="acme", data=data, cases=CASES, default="cold"))

    assert (out.branch, out.matched) == (branch, matched)


def test_nested_data_and_no_default() -> None:
    data = {"nodes": {"score": {"output": {"json": {"score": 85}}}}}
    cases = [{"branch": "hot", "when": "nodes.score.output.json.score >= 80"}]
    assert route.fn(RouteInput(client="acme", data=data, cases=cases)).branch == "hot"

    data["nodes"]["score"]["output"]["json"]["score"] = 10
    with pytest.raises(PermanentNodeError, match="No route condition held"):
        route.fn(RouteInput(client="acme", data=data, cases=cases))


@pytest.mark.parametrize("when", ["missing", "missing >= 80", "score / 0 > 1"])
def test_an_unknown_name_or_a_failing_condition_is_an_error(when: str) -> None:
    cases = [{"branch": "x", "when": when}]
    with pytest.raises(PermanentNodeError, match="Condition"):
        route.fn(RouteInput(client="acme", data={"score": 1}, cases=cases, default="y"))


def test_conditions_cannot_reach_python_internals() -> None:
    cases = [{"branch": "x", "when": "score.__class__.__mro__[1].__subclasses__()"}]
    with pytest.raises(PermanentNodeError):
        route.fn(RouteInput(client="acme", data={"score": 1}, cases=cases))


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"cases": [{"branch": "a", "when": "score >="}]}, ("cases", 0, "when")),
        ({"cases": []}, ("cases",)),
        ({"cases": [{"branch": "a", "when": "1"}, {"branch": "a", "when": "2"}]}, ()),
    ],
)
def test_bad_params_fail_validation(params: dict[str, object], loc: tuple[object, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        RouteInput.model_validate({"client": "acme", **params})

    assert info.value.errors()[0]["loc"] == loc
