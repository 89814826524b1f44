"""A failed run's reason in the client's words: each mapping, from the exceptions the nodes really
raise and from the state messages Prefect really writes; never a class name or a traceback."""

from __future__ import annotations

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType

from agency.egress.policy import EgressPolicy, EgressRefused
from agency.errors import (
    CredentialInvalid,
    CredentialMissing,
    PermanentNodeError,
    TransientNodeError,
    status_to_error,
)
from blocks.oauth.tokens import needs_reconnect_message
from services.failure_words import CANCELLED, OUR_SIDE, explain, explain_exception

API = "GET https://api.acme.test/v1/people"


def _http_error(status: int) -> Exception:
    """What ``http_request`` raises for an answer with ``status``."""
    return status_to_error(status)(f"{API} answered {status}: nope")


CASES: list[tuple[BaseException, int, str]] = [
    (
        CredentialInvalid(needs_reconnect_message("Google", "work")),
        0,
        "Your Google connection needs reconnecting: open Credentials and press Reconnect.",
    ),
    (
        CredentialInvalid("Google refused the connection 'work' (HTTP 401): reconnect it."),
        0,
        "Your Google connection needs reconnecting: open Credentials and press Reconnect.",
    ),
    (
        CredentialMissing("acme", "smtp", "office"),
        0,
        "The workflow needs an Email account (SMTP) credential named “office”: "
        "add it under Credentials.",
    ),
    (
        _http_error(401),
        0,
        "Your API (api.acme.test) answered 401: check the key in Credentials.",
    ),
    (
        _http_error(403),
        0,
        "Your API (api.acme.test) answered 403: check the key in Credentials.",
    ),
    (
        _http_error(404),
        0,
        "The address https://api.acme.test/v1/people was not found (404): "
        "check it in the workflow's settings.",
    ),
    (
        PermanentNodeError(
            "SMTP server mail.acme.test:587 rejected the login of user 'bot' (535); "
            "check the 'default' smtp credential."
        ),
        0,
        "Your mail server refused the login: check the password in Credentials.",
    ),
    (
        _http_error(503),
        3,
        "The service api.acme.test did not answer; the run was retried 3 times. "
        "It will work again when api.acme.test is back — press Retry.",
    ),
    (
        TransientNodeError(f"{API} timed out after 30 s (ReadTimeout)."),
        1,
        "The service api.acme.test did not answer; the run was retried once. "
        "It will work again when api.acme.test is back — press Retry.",
    ),
    (
        TransientNodeError("Cannot talk to SMTP server mail.acme.test:587: ConnectionRefusedError"),
        2,
        "The service mail.acme.test did not answer; the run was retried 2 times. "
        "It will work again when mail.acme.test is back — press Retry.",
    ),
    (ZeroDivisionError("division by zero"), 0, OUR_SIDE),
    (KeyError("source_url"), 0, OUR_SIDE),
    (PermanentNodeError("Condition 'x >' cannot be evaluated: bad syntax"), 0, OUR_SIDE),
]


@pytest.mark.parametrize(("exc", "retries", "words"), CASES, ids=lambda c: type(c).__name__)
def test_each_failure_has_its_words(exc: BaseException, retries: int, words: str) -> None:
    assert explain_exception(exc, retries=retries) == words
    # as Prefect writes it into a failed flow run's and task run's state
    assert (
        explain(f"Flow run encountered an exception: {type(exc).__name__}: {exc}", retries=retries)
        == words
    )
    assert (
        explain(f"Task run encountered an exception {type(exc).__name__}: {exc}", retries=retries)
        == words
    )


def test_egress_refusal_from_the_real_policy_names_the_address() -> None:
    policy = EgressPolicy()  # nothing allow-listed: the product's default
    with pytest.raises(EgressRefused) as refused:
        policy.check("10.20.30.40", 443)
    assert explain_exception(refused.value) == (
        "The address 10.20.30.40 is not reachable from the platform (private network). "
        "Ask your agency."
    )


def test_no_words_name_a_class_or_show_a_traceback() -> None:
    traceback = (
        "Execution was interrupted by an unexpected exception: Traceback (most recent call "
        'last):\n  File "x.py", line 1, in <module>\nRuntimeError: boom'
    )
    said = [explain_exception(exc, retries=r) for exc, r, _ in CASES]
    said += [explain(traceback), explain(None), explain(""), CANCELLED]
    for sentence in said:
        assert "Error" not in sentence and "Traceback" not in sentence and "\n" not in sentence
        assert sentence.endswith(".") and sentence[0].isupper()
    assert explain(traceback) == OUR_SIDE


@task(retries=2, retry_delay_seconds=0)
def _call_api() -> None:
    raise TransientNodeError(f"{API} answered 503: busy")


@task
def _load_credential() -> None:
    raise CredentialMissing("acme", "openai", "default")


@flow(name="failure-words-demo")
def _demo(which: str) -> None:
    (_call_api if which == "api" else _load_credential)()


@pytest.mark.usefixtures("prefect_server")
def test_words_from_the_states_prefect_records() -> None:
    for which, expected in (
        ("api", "did not answer; the run was retried 2 times"),
        ("credential", "needs an AI model (OpenAI-compatible) credential named “default”"),
    ):
        state = _demo(which, return_state=True)
        assert state.type == StateType.FAILED
        run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as api:
            run = api.read_flow_run(run_id)
            (failed,) = [
                t
                for t in api.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
                )
                if t.state and t.state.type == StateType.FAILED
            ]
        assert run.state is not None and failed.state is not None
        retries = failed.run_count - 1
        assert expected in explain(run.state.message, retries=retries)
        assert expected in explain(failed.state.message, retries=retries)
