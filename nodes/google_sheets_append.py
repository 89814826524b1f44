"""The ``google_sheets_append`` node: append rows to a Google Sheet with a connected Google account.

Protocol (Sheets API v4, ``google`` credential with the spreadsheets scope): ``POST
/v4/spreadsheets/<id>/values/<range>:append?valueInputOption=<option>&insertDataOption=INSERT_ROWS``
with ``{"values": rows}``; Google finds the table at ``range`` and writes the rows below its last
row, answering ``{"updates": {"updatedRange", "updatedRows", ...}}``. A refused token (401/403)
raises ``CredentialInvalid`` (reconnect it), 408/425/429/5xx and connection errors
``TransientNodeError``, any other 4xx (unknown sheet, bad range) ``PermanentNodeError``.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from prefect import get_run_logger
from pydantic import Field

from nodes._base import CredentialInput, NodeOutput, NodeSpec, node_task
from nodes._oauth import connected_account

KIND = "google_sheets_append"
CREDENTIAL_KIND = "google"

Cell = str | int | float | bool | None


class GoogleSheetsAppendInput(CredentialInput):
    """Rows to append to one sheet."""

    credential: str = Field(
        default="default",
        title="Credential",
        description="Name of the client's connected Google account (or google/<name>).",
    )
    spreadsheet_id: str = Field(
        min_length=1,
        title="Spreadsheet id",
        description="The id in the sheet's URL: docs.google.com/spreadsheets/d/<id>/edit.",
    )
    range: str = Field(
        default="Sheet1!A1",
        min_length=1,
        title="Range",
        description="A1 range of the table to append to, e.g. Sheet1!A1 or 'Leads 2025'!A:D.",
    )
    rows: list[list[Cell]] = Field(
        min_length=1, title="Rows", description="Rows to append, each a list of cell values."
    )
    value_input_option: Literal["USER_ENTERED", "RAW"] = Field(
        default="USER_ENTERED",
        title="Value input",
        description="USER_ENTERED parses values as if typed (formulas, dates); RAW stores as is.",
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, title="Timeout", description="Seconds for the request."
    )


class GoogleSheetsAppendOutput(NodeOutput):
    """Where the rows landed."""

    updated_rows: int = Field(title="Updated rows", description="How many rows were written.")
    updated_range: str = Field(
        title="Updated range", description="A1 range the rows were written to."
    )


@node_task(KIND, timeout_seconds=120)
def google_sheets_append(params: GoogleSheetsAppendInput) -> GoogleSheetsAppendOutput:
    """Append ``rows`` below the table at ``range`` of a Google Sheet.

    Example::

        google_sheets_append(GoogleSheetsAppendInput(client="acme", spreadsheet_id="1AbC",
                                                     range="Leads!A1",
                                                     rows=[["Ann", "ann@example.com", 91]]))
    """
    google = connected_account(params.client, params.credential, CREDENTIAL_KIND, ("google",))
    url = (
        f"{google.provider.api_url('sheets')}/v4/spreadsheets/"
        f"{quote(params.spreadsheet_id, safe='')}/values/{quote(params.range, safe='!:')}:append"
    )
    response = google.call(
        "POST",
        url,
        "Sheets append",
        params.timeout_seconds,
        params={"valueInputOption": params.value_input_option, "insertDataOption": "INSERT_ROWS"},
        json={"values": params.rows},
    )
    updates = response.json().get("updates", {})
    out = GoogleSheetsAppendOutput(
        updated_rows=int(updates.get("updatedRows", 0)),
        updated_range=str(updates.get("updatedRange", "")),
    )
    get_run_logger().info("Appended %d row(s) to %s", out.updated_rows, out.updated_range)
    return out


SPEC = NodeSpec(
    kind=KIND,
    title="Append to Google Sheet",
    description=(
        "Append rows to a Google Sheet with the client's connected Google account; returns how "
        "many rows were written and where."
    ),
    input_model=GoogleSheetsAppendInput,
    output_model=GoogleSheetsAppendOutput,
    credential_kind=CREDENTIAL_KIND,
    task=google_sheets_append,
    example={
        "client": "acme",
        "credential": "default",
        "spreadsheet_id": "1AbCdEfGhIjKlMnOp",
        "range": "Leads!A1",
        "rows": [["Ann", "ann@example.com", 91]],
    },
)
