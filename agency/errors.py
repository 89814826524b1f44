"""One error vocabulary for the whole platform.

Retries key on the class (``TransientNodeError`` retries, everything else fails once), never on
message text. Messages are plain sentences safe to show to a client: they never carry a secret.
"""

from __future__ import annotations


class AgencyError(Exception):
    """Base of every error the platform raises on purpose."""


class InputInvalid(AgencyError):
    """Input from a user or a spec failed validation (CLI exit 2, HTTP 4xx)."""


class NotFound(AgencyError):
    """An unknown client, workflow, activation or credential."""


class CredentialMissing(AgencyError):
    """A client has no stored credential of the kind and name a task asked for."""

    def __init__(self, client: str, kind: str, name: str, detail: str | None = None) -> None:
        self.client, self.kind, self.name = client, kind, name
        message = (
            f"Client '{client}' has no '{kind}' credential named '{name}'"
            + (f" ({detail})" if detail else "")
            + f". Set it with: agency credentials set --client {client} --kind {kind} --name {name}"
        )
        super().__init__(message)


class CredentialInvalid(AgencyError):
    """Stored or entered credential values do not fit the credential kind's model."""


class SecretStoreError(AgencyError):
    """The secret store failed; the message names the store address and path, never a token."""


class SecretStoreUnavailable(SecretStoreError):
    """The secret store could not be reached."""


class SecretStorePermissionDenied(SecretStoreError):
    """The secret store refused the operation (HTTP 403)."""


class PermanentNodeError(AgencyError):
    """A node failed in a way a retry cannot fix (4xx, bad input, bad credential)."""


class TransientNodeError(AgencyError):
    """A node failed in a way a retry may fix (timeout, connection reset, 429, 5xx)."""


def status_to_error(status: int) -> type[AgencyError]:
    """Map a counterpart's HTTP status code to the error class nodes raise for it.

    408, 425, 429 and every 5xx are transient; any other 4xx is permanent.
    """
    if status in (408, 425, 429) or status >= 500:
        return TransientNodeError
    return PermanentNodeError


class AuthFailed(AgencyError):
    """Sign-in refused: wrong email or password, locked account, or an expired session."""


class AccessDenied(AgencyError):
    """The signed-in user may not do this (another client's data, or an agency-only action)."""


class ClientSuspended(AccessDenied):
    """The client is suspended by its agency: every door refuses it until it is resumed."""


class SpecInvalid(InputInvalid):
    """A workflow spec failed validation; ``problems`` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in workflow spec:\n" + "\n".join(problems))


class SpecRuntimeError(PermanentNodeError):
    """A spec node's params could not be built from the run's data (names node and field)."""


class ApprovalCancelled(PermanentNodeError):
    """Nobody answered an approval request and its on-timeout policy is ``cancel``."""
