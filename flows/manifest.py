"""The manifest every prebuilt workflow ships: what the portal shows and activation validates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agency.errors import InputInvalid
from flows.outline import Outline

Trigger = Literal["cron", "webhook", "manual"]


#: what a workflow that sends email accepts besides an smtp credential: a connected mailbox
MAILBOX_KINDS: tuple[str, ...] = ("google", "microsoft")
#: the description of a settings field naming the email credential
EMAIL_CREDENTIAL_HELP = (
    "Name of the smtp credential, or google/<name> / microsoft/<name> for a connected mailbox."
)


def _field_label(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """``Recipients (2)`` for ``('recipients', 1)``: the field's title, a list item counted
    from 1, so the message names what the person sees on the form."""
    if not loc:
        return "settings"
    field = model.model_fields.get(str(loc[0]))
    label = (field.title if field is not None and field.title else None) or str(loc[0])
    items = [f"({p + 1})" for p in loc[1:] if isinstance(p, int)]
    return " ".join([label, *items])


class CredentialRequirement(BaseModel):
    """A credential the workflow needs: a fixed ``name``, or the settings field that picks it.

    A setting holds a plain name (a credential of ``kind``) or ``<kind>/<name>`` naming ``kind``
    or one of the ``also`` kinds, e.g. ``google/default`` for a workflow that sends email.
    """

    kind: str = Field(description="Credential kind, e.g. smtp.")
    also: tuple[str, ...] = Field(
        default=(), description="Other kinds that satisfy it, given as <kind>/<name>."
    )
    setting: str | None = Field(default=None, description="Settings field holding the name.")
    name: str | None = Field(default=None, description="Fixed credential name (spec workflows).")
    description: str = Field(description="Why the workflow needs it, shown to the client.")
    optional: bool = Field(default=False, description="The workflow runs without it.")

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind that satisfies the requirement, ``kind`` first."""
        return (self.kind, *self.also)

    def resolve(self, value: str) -> tuple[str, str]:
        """``(kind, name)`` of a setting value (``name`` or ``kind/name``); ``InputInvalid`` in
        plain words when it names a kind the requirement does not accept."""
        kind, sep, name = value.partition("/")
        if not sep:
            return self.kind, value
        if kind not in self.kinds or not name:
            where = f"Setting '{self.setting}'" if self.setting else "The credential"
            accepted = f"the name of one of the client's {self.kind} credentials" + "".join(
                f", or {k}/<name>" for k in self.also
            )
            raise InputInvalid(f"{where} is '{value}', but this workflow accepts only {accepted}.")
        return kind, name


class WorkflowManifest(BaseModel):
    """Slug, title, settings model, credentials, triggers, default cron and version."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    slug: str
    title: str
    description: str
    version: str
    entrypoint: str = Field(description="`path/to/module.py:flow_function`, relative to the repo.")
    settings_model: type[BaseModel]
    credentials: tuple[CredentialRequirement, ...] = ()
    triggers: tuple[Trigger, ...] = ("cron", "manual")
    default_cron: str | None = None
    event_model: type[BaseModel] | None = Field(
        default=None, description="Model a webhook event must fit (422 from the gateway if not)."
    )
    accepts_batches: bool = Field(
        default=False,
        description="The flow takes `events: list` (a batch trigger groups webhooks into one run).",
    )
    agency_fields: tuple[str, ...] = Field(
        default=(),
        description="Settings the agency decides (model, prompts, limits): hidden from the "
        "client's form, where their defaults or the agency's values apply.",
    )
    outline: Outline | None = Field(
        default=None,
        description="The workflow's steps and edges, drawn in the portal (specs: from the spec).",
    )

    @model_validator(mode="after")
    def _known_agency_fields(self) -> WorkflowManifest:
        unknown = set(self.agency_fields) - set(self.settings_model.model_fields)
        if unknown:
            raise ValueError(f"agency_fields names no setting: {', '.join(sorted(unknown))}")
        return self

    def credential_fields(self) -> dict[str, CredentialRequirement]:
        """Settings fields that name a credential, with their requirement."""
        return {r.setting: r for r in self.credentials if r.setting}

    def client_fields(self) -> list[str]:
        """Settings a client fills in themselves (no agency field, no credential name)."""
        hidden = set(self.agency_fields) | set(self.credential_fields())
        return [n for n in self.settings_model.model_fields if n not in hidden]

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError("version must be semantic: MAJOR.MINOR.PATCH")
        return value

    def validate_settings(self, data: dict[str, Any]) -> BaseModel:
        """Validate client settings; raise ``InputInvalid`` listing every bad field."""
        try:
            model = self.settings_model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_field_label(self.settings_model, err['loc'])}: "
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors(include_input=False)
            )
            raise InputInvalid(
                f"Invalid settings for workflow '{self.slug}': {problems}."
            ) from None
        self.required_credentials(model)  # a credential of a kind the workflow cannot use
        return model

    def required_credentials(self, settings: BaseModel) -> list[tuple[str, str]]:
        """``(kind, name)`` pairs the given settings will load at run time (``google/boss`` in
        a setting is ``("google", "boss")``); ``InputInvalid`` for a kind it does not accept."""
        pairs = []
        for req in self.credentials:
            name = req.name or (getattr(settings, req.setting, None) if req.setting else None)
            if name:
                pairs.append(req.resolve(str(name)))
        return pairs
