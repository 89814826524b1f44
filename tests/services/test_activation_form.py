"""Checking an activation form: every problem at once, keyed by its field, in plain words —
emails and URLs (the flows' own validators), list lines, numbers and their bounds, table names,
a credential of a kind the workflow cannot use, cron and time zone; a right form has none."""

from __future__ import annotations

from services.activation_form import CRON, TIMEZONE, form_errors

DIGEST = {"source_url": "https://api.example.test/today", "recipients": ["team@example.test"]}


def test_a_right_form_has_no_problem() -> None:
    assert form_errors("daily_digest", DIGEST, "0 7 * * *", "Europe/Paris") == {}
    assert form_errors("daily_digest", DIGEST, None, "UTC") == {}


def test_every_problem_is_named_under_its_own_field_at_once() -> None:
    data = {"source_url": "https://", "recipients": ["team@example.test", "not-an-email", "a@b"]}
    assert form_errors("daily_digest", data, "61 7 * * *", "Mars/Olympus") == {
        "source_url": ["'https://' is not a web address (it starts with https:// or http://)."],
        "recipients": [
            "Line 2: 'not-an-email' is not an email address (like name@example.com).",
            "Line 3: 'a@b' is not an email address (like name@example.com).",
        ],
        CRON: ["Invalid cron expression '61 7 * * *': use 5 fields, e.g. '0 7 * * *' for 07:00."],
        TIMEZONE: [
            "Unknown time zone 'Mars/Olympus': use an IANA name such as Europe/Paris or UTC."
        ],
    }


def test_required_fields_and_empty_lists_say_what_to_enter() -> None:
    errors = form_errors("daily_digest", {"recipients": []}, None, " ")
    assert errors == {
        "source_url": ["Fill this in: it is required."],
        "recipients": ["Enter at least 1, one per line."],
        TIMEZONE: ["Fill in a time zone, such as Europe/Paris or UTC."],
    }


def test_numbers_are_checked_against_their_bounds_in_words() -> None:
    urls = {"urls": ["https://example.org"]}
    assert form_errors("uptime_monitor", {**urls, "timeout_seconds": "90"}, None, "UTC") == {
        "timeout_seconds": ["Enter a number at most 60."]
    }
    assert form_errors("uptime_monitor", {**urls, "timeout_seconds": "0"}, None, "UTC") == {
        "timeout_seconds": ["Enter a number more than 0."]
    }
    assert form_errors("uptime_monitor", {**urls, "timeout_seconds": "soon"}, None, "UTC") == {
        "timeout_seconds": ["Enter a number, like 2.5."]
    }
    lead = {"enrich_url": "https://crm.example.org/people"}
    assert form_errors("lead_intake", {**lead, "hot_threshold": -1}, None, "UTC") == {
        "hot_threshold": ["Enter a number at least 0."]
    }
    assert form_errors("lead_intake", {**lead, "hot_threshold": "high"}, None, "UTC") == {
        "hot_threshold": ["Enter a whole number, like 3."]
    }
    assert form_errors("lead_intake", {**lead, "leads_table": "Leads; DROP"}, None, "UTC") == {
        "leads_table": ["Use lowercase letters, digits and _ only, starting with a letter or _."]
    }


def test_a_credential_of_a_kind_the_workflow_cannot_use_is_named() -> None:
    errors = form_errors(
        "daily_digest", {**DIGEST, "smtp_credential": "slack_webhook/x"}, None, "UTC"
    )
    assert list(errors) == ["smtp_credential"]
    assert (
        "accepts only the name of one of the client's smtp credentials"
        in errors["smtp_credential"][0]
    )
