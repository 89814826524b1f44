"""Platform database tables (SQLAlchemy 2 typed declarative), portable to SQLite and PostgreSQL.

JSON columns are replaced, not mutated in place: assign a new list/dict so the change is saved.
Timestamps are timezone-aware UTC on both backends (see :class:`UtcDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ClientStatus = Literal["active", "suspended"]
UserRole = Literal["client", "agency"]
ActivationStatus = Literal["active", "paused", "inactive"]

CLIENT_STATUSES: tuple[ClientStatus, ...] = ("active", "suspended")
USER_ROLES: tuple[UserRole, ...] = ("client", "agency")
ACTIVATION_STATUSES: tuple[ActivationStatus, ...] = ("active", "paused", "inactive")

# Named constraints make alembic migrations identical on every backend and every run.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always stores and returns aware UTC datetimes.

    SQLite keeps no offset, so naive values read back are UTC by construction; naive values
    written are rejected rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base of every platform table; ``Base.metadata`` is alembic's target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Client(Base):
    """A customer of the agency; ``slug`` names it in URLs, deployments and secret paths."""

    __tablename__ = "clients"
    __table_args__ = (CheckConstraint(_in("status", CLIENT_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    contact_emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[ClientStatus] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="client")
    activations: Mapped[list[Activation]] = relationship(back_populates="client")


class User(Base):
    """A person who signs in: a client user (``client_id`` set) or agency staff (``None``)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", USER_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[UserRole] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # set for an invited user: the temporary password only lets them choose their own
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # sessions issued before this instant are over (password or role changed); None: none ended
    sessions_valid_after: Mapped[datetime | None] = mapped_column(UtcDateTime)

    client: Mapped[Client | None] = relationship(back_populates="users")


class Activation(Base):
    """One client's use of one workflow; the current state, with its history in ``versions``."""

    __tablename__ = "activations"
    __table_args__ = (
        UniqueConstraint("client_id", "workflow"),
        CheckConstraint(_in("status", ACTIVATION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    workflow: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cron: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[ActivationStatus] = mapped_column(String(16), default="active")
    deployment_id: Mapped[str | None] = mapped_column(String(36))
    version: Mapped[int] = mapped_column(Integer, default=1)
    workflow_version: Mapped[str | None] = mapped_column(String(32))
    # a scheduled run later than this is notified; None: twice its usual duration, or 15 min
    late_after_minutes: Mapped[int | None] = mapped_column(Integer)
    # the release the client's deployment runs (issue 29); None only before its first activation
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    client: Mapped[Client] = relationship(back_populates="activations")
    versions: Mapped[list[ActivationVersion]] = relationship(
        back_populates="activation",
        order_by="ActivationVersion.version",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ActivationVersion(Base):
    """An immutable snapshot of an activation, written on every change; the roll-back source."""

    __tablename__ = "activation_versions"
    __table_args__ = (
        UniqueConstraint("activation_id", "version"),
        CheckConstraint(_in("status", ACTIVATION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activation_id: Mapped[int] = mapped_column(ForeignKey("activations.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cron: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    workflow_version: Mapped[str | None] = mapped_column(String(32))
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    status: Mapped[ActivationStatus] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(320))

    activation: Mapped[Activation] = relationship(back_populates="versions")


class AuditLog(Base):
    """Who did what to which target; written by the service layer for every change."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))
    # SET NULL keeps the trail readable after a client row is removed; ``target`` still names it.
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("clients.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LlmUsage(Base):
    """Tokens spent by one LLM call; ``client`` is a slug so workers need no client lookup."""

    __tablename__ = "llm_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    workflow: Mapped[str | None] = mapped_column(String(64))
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    model: Mapped[str] = mapped_column(String(128))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float)


WEBHOOK_VERIFIERS: tuple[str, ...] = ("standard", "github", "stripe", "slack", "shopify", "token")
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "dispatched", "failed")
BATCH_MODES: tuple[str, ...] = ("off", "adaptive", "always")


class WebhookEndpoint(Base):
    """The webhook trigger of one activation; its secret lives in the secret store, never here."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint(_in("verifier", WEBHOOK_VERIFIERS), name="verifier"),
        CheckConstraint(_in("batch_mode", BATCH_MODES), name="batch_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activation_id: Mapped[int] = mapped_column(
        ForeignKey("activations.id", ondelete="CASCADE"), unique=True
    )
    verifier: Mapped[str] = mapped_column(String(16), default="standard")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit_per_hour: Mapped[int | None] = mapped_column(Integer)
    # batch trigger: group deliveries into one run of up to N events, waiting at most T seconds
    batch_max_events: Mapped[int | None] = mapped_column(Integer)
    batch_max_wait_s: Mapped[float | None] = mapped_column(Float)
    # off: one run per event; always: batches as above; adaptive: one run per event until the
    # activation falls behind (see deployments.webhooks.adaptive), then batches of batch_max_events
    batch_mode: Mapped[str] = mapped_column(String(10), default="off", server_default="off")
    adaptive_inflight: Mapped[int | None] = mapped_column(Integer)
    adaptive_age_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


DELIVERY_OUTCOMES: tuple[str, ...] = ("done", "failed")


class WebhookBatch(Base):
    """Deliveries of a batch activation grouped into one flow run (``events: [...]``).

    The batch and its members are committed before the run is created; ``id`` is the run's
    idempotency key, so a dispatcher killed in between creates no second run.
    """

    __tablename__ = "webhook_batches"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        Index("ix_webhook_batches_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    activation_id: Mapped[int] = mapped_column(
        ForeignKey("activations.id", ondelete="CASCADE"), index=True
    )
    client: Mapped[str] = mapped_column(String(64), index=True)
    workflow: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))


class WebhookDelivery(Base):
    """One accepted request: the outbox row a dispatcher turns into exactly one flow run.

    ``id`` is the delivery id answered with the 202 and used as Prefect's idempotency key.
    ``dedupe_key`` is the sender's delivery id; it is cleared once older than the dedupe window.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("activation_id", "dedupe_key"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        CheckConstraint(_in("outcome", DELIVERY_OUTCOMES), name="outcome"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # the hourly budget counts an activation's recent rows; also serves activation lookups
        Index("ix_webhook_deliveries_activation_received", "activation_id", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    activation_id: Mapped[int] = mapped_column(ForeignKey("activations.id", ondelete="CASCADE"))
    client: Mapped[str] = mapped_column(String(64), index=True)
    workflow: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # batch activations: set at accept; the batch (and the event's place in it) once grouped
    batched: Mapped[bool | None] = mapped_column(Boolean)  # None: adaptive, not yet decided
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("webhook_batches.id", ondelete="SET NULL"), index=True
    )
    batch_index: Mapped[int | None] = mapped_column(Integer)
    # what the workflow made of this event inside a batch run: done, or failed with the error
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_error: Mapped[str | None] = mapped_column(String(500))


class ApiKey(Base):
    """A client's API key for the client API; only its SHA-256 digest is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


CREDENTIAL_HEALTH: tuple[str, ...] = ("connected", "expiring", "needs_reconnect", "failing")


class CredentialStatus(Base):
    """The health of one client credential: connection identity, last check, breakage.

    OAuth connections have ``provider`` and ``account``; pasted credentials with a connection
    test get a row at their first check. ``notified_at`` is set once per breakage so nobody is
    emailed twice for it. Its row is also the refresh lock of an OAuth credential (an UPDATE of
    the row is the first statement of a refresh's transaction on both backends).
    """

    __tablename__ = "credential_status"
    __table_args__ = (
        UniqueConstraint("client_id", "kind", "name"),
        CheckConstraint(_in("status", CREDENTIAL_HEALTH), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(320))
    scopes: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(32), default="connected")
    detail: Mapped[str | None] = mapped_column(String(500))
    connected_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    refreshed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OAuthState(Base):
    """One connect attempt: the OAuth ``state`` (by digest), who asked, and how it ended.

    Single use (``used_at``), expiring ten minutes after ``created_at``, bound to the browser
    that opened the start link (``browser_hash``, the digest of a cookie the gateway set).
    """

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str | None] = mapped_column(String(200))
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome_ok: Mapped[bool | None] = mapped_column(Boolean)
    outcome: Mapped[str | None] = mapped_column(String(500))


NOTIFICATION_KINDS: tuple[str, ...] = (
    "run_failed",
    "approval_waiting",
    "run_late",
    "credential_broken",
)
NOTIFICATION_MESSAGE_STATUSES: tuple[str, ...] = ("sent", "queued", "digested")


class NotificationPreference(Base):
    """One person's switch for one notification kind; without a row the kind is on."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        UniqueConstraint("user_id", "kind"),
        CheckConstraint(_in("kind", NOTIFICATION_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # the user's client (None: agency staff), for row-level security
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class NotificationIncident(Base):
    """One thing worth telling people about (a failed run, a waiting approval, ...), once.

    ``subject`` names it within its kind (a flow run id, an activation and scheduled time, a
    credential breakage), so detecting it again finds this row instead of a second message.
    """

    __tablename__ = "notification_incidents"
    __table_args__ = (
        UniqueConstraint("kind", "subject"),
        CheckConstraint(_in("kind", NOTIFICATION_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    client_title: Mapped[str] = mapped_column(String(300))
    client_body: Mapped[str] = mapped_column(String(4000))
    agency_title: Mapped[str] = mapped_column(String(300))
    agency_body: Mapped[str] = mapped_column(String(4000))
    # set once every recipient has it (sent, or queued for a digest); None: to deliver
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # a delivery in progress holds the incident for a while, so two passes never both send it
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class NotificationMessage(Base):
    """One person's copy of one incident: sent on its own, or queued for (then in) a digest."""

    __tablename__ = "notification_messages"
    __table_args__ = (
        UniqueConstraint("incident_id", "email"),
        CheckConstraint(_in("status", NOTIFICATION_MESSAGE_STATUSES), name="status"),
        Index("ix_notification_messages_email_at", "email", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("notification_incidents.id", ondelete="CASCADE")
    )
    # the incident's client, for row-level security (the address may be the agency's)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    # the agency's copy (its wording names the client), not the client's
    for_agency: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # queued: when the person's hour is over and the digest goes out
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    digested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class NotificationWatermark(Base):
    """How far a detector has read (the notifications sweep's last completed pass)."""

    __tablename__ = "notification_watermarks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


RolloutStatus = Literal["running", "done", "halted", "undone"]
ROLLOUT_STATUSES: tuple[RolloutStatus, ...] = ("running", "done", "halted", "undone")


class Release(Base):
    """An immutable, content-addressed snapshot of the code one workflow version runs.

    ``digest`` is the SHA-256 of the release's files and manifest; the files live in the
    release store (a folder or S3) under that digest, never in this table.
    """

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("workflow", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    workflow_version: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # "git" (a clean commit) or "worktree"
    commit: Mapped[str | None] = mapped_column(String(40))
    files: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(320))


class Rollout(Base):
    """Moving a workflow's clients from one release to another: to chosen clients, a canary
    share that is watched before the rest follow, or all at once."""

    __tablename__ = "rollouts"
    __table_args__ = (CheckConstraint(_in("status", ROLLOUT_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64), index=True)
    from_release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    to_release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    mode: Mapped[str] = mapped_column(String(16))  # "clients", "canary" or "all"
    canary_percent: Mapped[int | None] = mapped_column(Integer)
    min_runs: Mapped[int] = mapped_column(Integer, default=5)
    max_hours: Mapped[float] = mapped_column(Float, default=24.0)
    margin: Mapped[float] = mapped_column(Float, default=0.1)
    status: Mapped[RolloutStatus] = mapped_column(String(16), default="running")
    # slugs of the clients this rollout moved, and the figures of its last evaluation
    clients: Mapped[list[str]] = mapped_column(JSON, default=list)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(320))


class Chain(Base):
    """A client's chain: ``downstream`` runs after each completed run of ``upstream`` (both
    the client's activations); ``automation_id`` is the Prefect automation doing it."""

    __tablename__ = "chains"
    __table_args__ = (UniqueConstraint("client_id", "upstream", "downstream"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    upstream: Mapped[str] = mapped_column(String(64))
    downstream: Mapped[str] = mapped_column(String(64))
    automation_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(320))
