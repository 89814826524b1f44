"""A credential setting's problem shows under its picker, as on the Workflows page, not in the box
above the Activate button: the page's pickers and checks, run with ``AppTest.from_function``
(the pickers only offer accepted credentials, so a typed reference stands for the bad value)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streamlit.testing.v1 import AppTest

LLM = "Writes the summary."  # the LLM picker's description


def _in_order(node: Any) -> Iterator[tuple[str, str]]:
    """``(element type, text)`` of the page's elements, top to bottom; a widget's text is its
    key (the picker of setting ``s`` is ``t.s``)."""
    children = getattr(node, "children", None)
    if children is None:
        value = getattr(node, "value", None)
        key = getattr(node, "key", None)
        yield node.type, key or (str(value) if value is not None else "")
        return
    for index in sorted(children):
        yield from _in_order(children[index])


def _after(page: list[tuple[str, str]], text: str) -> tuple[str, str]:
    """The element right after the first one containing ``text``."""
    at = next(i for i, (_, value) in enumerate(page) if text in value)
    return page[at + 1]


def _picker_form(stored: list[tuple[str, str]], typed: dict[str, str]) -> None:
    """The Workflows page's credential pickers of ``daily_digest``, checked as the page checks
    them, with ``typed`` standing for values the pickers cannot offer."""
    import streamlit as st

    from flows.catalog import get_workflow
    from portal.components import show_field_errors
    from portal.components.credential_picker import credential_pickers
    from services.activation_form import form_errors

    base = {"source_url": "https://api.example.test/today", "recipients": ["team@example.test"]}
    slots: dict[str, object] = {}
    data = base | credential_pickers(get_workflow("daily_digest"), stored, {}, "t", slots=slots)
    st.subheader("Schedule")
    elsewhere = show_field_errors(slots, form_errors("daily_digest", data | typed, None, "UTC"))
    st.error(f"Elsewhere: {sorted(elsewhere)}")


STORED = [("openai", "default"), ("smtp", "office"), ("google", "gmail")]


def test_a_credential_problem_is_named_under_its_picker() -> None:
    # a reference to a kind this setting does not accept: the check behind the page says so
    at = AppTest.from_function(
        _picker_form, args=(STORED, {"smtp_credential": "slack_webhook/ops"}), default_timeout=30
    )
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    page = list(_in_order(at.main))
    problem = _after(page, "t.smtp_credential")
    assert (
        problem[0] == "error" and "Setting 'smtp_credential' is 'slack_webhook/ops'" in (problem[1])
    ), page
    assert [str(e.value) for e in at.error][-1] == "Elsewhere: []"
    schedule = next(i for i, (_, v) in enumerate(page) if v == "Schedule")
    assert page.index(problem) < schedule
    # the other picker has no problem under it
    assert _after(page, LLM)[0] != "error", page


def test_a_picker_without_a_problem_has_nothing_under_it() -> None:
    at = AppTest.from_function(_picker_form, args=(STORED, {}), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [str(e.value) for e in at.error] == ["Elsewhere: []"]
