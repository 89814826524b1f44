"""Platform settings, read once from ``AGENCY_*`` environment variables (or ``.env``).

Call :func:`get_settings` at start-up and pass the object down; nothing reads ``os.environ`` at
import time.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
# USD per million tokens (prompt, completion); override with AGENCY_LLM_PRICES='{"model": [i, o]}'.
DEFAULT_LLM_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
}


#: the running stack's settings, written by ``agency up`` into its home (see :class:`StackFile`)
STACK_SETTINGS_FILE = "stack-settings.json"
_read_stack_file: ContextVar[bool] = ContextVar("agency_read_stack_file", default=True)


class StackFile(PydanticBaseSettingsSource):
    """Settings from ``<home>/stack-settings.json``: what the running ``agency up`` was started
    with, so a second shell talks to that stack. Precedence: environment (and ``.env``) > this
    file > defaults; ``home`` itself comes from the environment or its default."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not _read_stack_file.get():
            return {}
        home = self.current_state.get("home") or self.settings_cls.model_fields["home"].default
        try:
            data = json.loads((Path(home).expanduser() / STACK_SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        fields = self.settings_cls.model_fields
        return {k: v for k, v in data.items() if k in fields and k != "home"}


class Settings(BaseSettings):
    """Everything configurable about the platform; environment variables use the AGENCY_ prefix."""

    model_config = SettingsConfigDict(
        env_prefix="AGENCY_", env_file=".env", extra="ignore", populate_by_name=True
    )

    home: Path = Field(
        default=Path.home() / ".agency",
        description="Directory for the embedded platform DB, keys, local files and service logs.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the platform DB; default: SQLite file under `home`.",
    )
    project_dir: Path = Field(
        default=PROJECT_DIR, description="Source directory deployments pull flows from."
    )
    work_pool: str = Field(default="agency", description="Prefect work pool for client runs.")
    webhook_work_pool: str | None = Field(
        default="agency-prefork",
        description="Work pool (type agency-prefork) for activations with a webhook trigger; "
        "empty: `work_pool`.",
    )
    delay_suspend_seconds: float = Field(
        default=60.0,
        ge=0,
        description="A `delay` node longer than this suspends its run (freeing the worker) and "
        "is rescheduled; shorter ones sleep in the run's process.",
    )
    draft_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint for `agency spec draft`."
    )
    draft_api_key: SecretStr | None = Field(default=None, description="Key for draft_base_url.")
    draft_model: str = Field(default="gpt-4o-mini", description="Model for `agency spec draft`.")
    spec_dir: Path | None = Field(
        default=None, description="Registered workflow specs; default: flows/specs/ in the repo."
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Fernet key the embedded store encrypts client secrets with before Prefect "
        "stores them; default: generated once into `<home>/secrets.key` (0600).",
    )
    vault_addr: str | None = Field(
        default=None, description="Vault address; when unset the embedded secret store is used."
    )
    vault_token: SecretStr | None = Field(default=None, description="Vault token (token auth).")
    vault_role_id: str | None = Field(default=None, description="AppRole role id.")
    vault_secret_id: SecretStr | None = Field(default=None, description="AppRole secret id.")
    vault_mount: str = Field(default="secret", description="KV v2 mount point.")
    vault_namespace: str | None = Field(default=None, description="Vault namespace (Enterprise).")
    vault_verify: bool = Field(default=True, description="Verify Vault's TLS certificate.")
    vault_block: str = Field(
        default="agency-vault", description="Name of the VaultConnection block workers use."
    )
    api_host: str = Field(default="127.0.0.1", description="Prefect server host for `make up`.")
    api_port: int = Field(default=4200, description="Prefect server port for `make up`.")
    gateway_host: str = Field(default="127.0.0.1", description="Webhook gateway bind host.")
    gateway_port: int = Field(default=8080, description="Webhook gateway bind port.")
    public_base_url: str | None = Field(
        default=None,
        description="Public URL of the gateway used in webhook URLs; default http://host:port.",
    )
    webhook_rate_limit_per_hour: int = Field(
        default=100, description="Default accepted webhook runs per activation and hour."
    )
    webhook_rotation_grace_seconds: int = Field(
        default=86_400, description="How long the old webhook secret still verifies after rotation."
    )
    storage_dir: Path | None = Field(
        default=None,
        description="Directory of the local file storage nodes use; default: `<home>/files`.",
    )
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("AGENCY_EGRESS_ALLOW", "AGENCY_SCRAPE_ALLOW_HOSTS"),
        description="Host names, IPs or CIDRs on a private network that client-supplied addresses "
        "may reach (comma-separated or a JSON list); the platform's own services stay refused. "
        "`AGENCY_SCRAPE_ALLOW_HOSTS` is an older name for it.",
    )
    egress_platform_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More `host:port` of the platform's own services that no client-supplied "
        "address may reach, beside those the settings name (Prefect API, DBs, Vault, Redis, "
        "gateway, portal).",
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_LLM_PRICES),
        description="USD per million (prompt, completion) tokens by model name or name prefix.",
    )
    llm_max_retry_after_seconds: float = Field(
        default=60.0, description="Longest Retry-After the llm node waits before its retry."
    )
    portal_host: str = Field(default="127.0.0.1", description="Address the portal listens on.")
    portal_port: int = Field(default=8501, description="Port the portal listens on.")
    portal_url: str | None = Field(
        default=None,
        description="Public base URL of the portal (for invite links); default: host and port.",
    )
    session_minutes: int = Field(
        default=480, description="A portal sign-in expires after this many minutes."
    )
    lockout_failures: int = Field(
        default=5, description="Failed sign-ins in a row that lock an account."
    )
    lockout_minutes: int = Field(default=15, description="How long a locked account stays locked.")
    notify_smtp_host: str | None = Field(
        default=None,
        description="SMTP relay for the platform's own notices (broken credentials, ...); unset: "
        "notices go to the log and the audit log only.",
    )
    notify_smtp_port: int = Field(default=587, description="Port of the notice SMTP relay.")
    notify_smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="How the notice relay connection is encrypted."
    )
    notify_smtp_username: str | None = Field(default=None, description="Notice relay login.")
    notify_smtp_password: SecretStr | None = Field(
        default=None, description="Notice relay password."
    )
    notify_from: str = Field(
        default="Agency <noreply@agency.test>", description="Sender of the platform's notices."
    )
    notify_agency_emails: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More addresses (comma-separated or a JSON list) that get the agency's "
        "notices, beside every agency staff user.",
    )
    notify_agency_slack_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack incoming-webhook URL that also gets the agency's notifications "
        "(failed runs, waiting approvals, late runs, broken credentials); unset: email only.",
    )
    notify_digest_after: int = Field(
        default=5,
        ge=1,
        description="Notifications one person gets on their own per hour; the rest of that hour "
        "go out as one digest.",
    )
    demo: bool = Field(
        default=True,
        description="`make up` creates the demo agency (`agency demo`) on a home without clients "
        "and starts its demo services; false: neither.",
    )
    demo_host: str = Field(
        default="127.0.0.1", description="Loopback address of the demo services."
    )
    demo_smtp_port: int = Field(default=2525, description="Port of the demo mail catcher (SMTP).")
    demo_http_port: int = Field(
        default=8090, description="Port of the demo sample API and demo model (HTTP)."
    )
    release_store: Literal["local", "s3"] = Field(
        default="local",
        description="Where workflow releases live: a folder (`release_dir`) or an S3 bucket.",
    )
    release_dir: Path | None = Field(
        default=None,
        description="Folder of the local release store, and where workers unpack releases "
        "fetched from S3; default: `<home>/releases`.",
    )
    release_s3_bucket: str | None = Field(default=None, description="Bucket of the S3 store.")
    release_s3_prefix: str = Field(default="releases", description="Key prefix in that bucket.")
    release_s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, moto); empty: AWS."
    )
    release_s3_credentials_block: str | None = Field(
        default=None,
        description="Name of a prefect-aws `AwsCredentials` block workers fetch releases with; "
        "empty: the default AWS credential chain.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment and ``.env`` first, then the running stack's file (:class:`StackFile`)."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            StackFile(settings_cls),
            file_secret_settings,
        )

    @classmethod
    def without_stack_file(cls) -> Settings:
        """Settings from the environment and defaults only: what ``agency up`` starts with."""
        token = _read_stack_file.set(False)
        try:
            return cls()
        finally:
            _read_stack_file.reset(token)

    def stack_file_values(self) -> dict[str, Any]:
        """The settings ``agency up`` writes for other shells: those set explicitly (environment,
        ``.env``), secrets left out."""
        secret = {n for n, f in type(self).model_fields.items() if "SecretStr" in str(f.annotation)}
        return self.model_dump(mode="json", include=self.model_fields_set - secret)

    @field_validator(
        "egress_allow", "egress_platform_endpoints", "notify_agency_emails", mode="before"
    )
    @classmethod
    def _list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def platform_database_url(self) -> str:
        """The platform DB URL, defaulting to SQLite in the platform home."""
        return self.database_url or f"sqlite:///{self.home / 'agency.db'}"

    @property
    def files_dir(self) -> Path:
        """The local file storage directory, defaulting to ``<home>/files``."""
        return (self.storage_dir or self.home / "files").expanduser()

    @property
    def releases_dir(self) -> Path:
        """The local release store (and unpack folder), defaulting to ``<home>/releases``."""
        return (self.release_dir or self.home / "releases").expanduser()

    @property
    def gateway_url(self) -> str:
        """Base URL senders use to reach the webhook gateway."""
        base = self.public_base_url or f"http://{self.gateway_host}:{self.gateway_port}"
        return base.rstrip("/")

    @property
    def portal_base_url(self) -> str:
        """Where people reach the portal: ``portal_url``, else its host and port."""
        return (self.portal_url or f"http://{self.portal_host}:{self.portal_port}").rstrip("/")

    def pool_for(self, *, webhook: bool) -> str:
        """The work pool of an activation: the prefork pool when a webhook starts it."""
        return (self.webhook_work_pool or self.work_pool) if webhook else self.work_pool

    @property
    def uses_vault(self) -> bool:
        """True when Vault is the configured secret store."""
        return bool(self.vault_addr)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first call."""
    return Settings()
