"""The platform database: models, engines and sessions, alembic migrations, usage recording.

Migrate once at start-up with ``upgrade(url)``, then work in ``with session_scope(url) as s:``.
"""

from agency.db.engine import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    dispose_engines,
    downgrade,
    make_engine,
    normalize_url,
    session_factory,
    session_scope,
    upgrade,
)
from agency.db.models import (
    ACTIVATION_STATUSES,
    CLIENT_STATUSES,
    USER_ROLES,
    Activation,
    ActivationStatus,
    ActivationVersion,
    AuditLog,
    Base,
    Client,
    ClientStatus,
    LlmUsage,
    User,
    UserRole,
    UtcDateTime,
    utcnow,
)
from agency.db.usage import record_llm_usage

__all__ = [
    "ACTIVATION_STATUSES",
    "CLIENT_STATUSES",
    "MIGRATIONS_DIR",
    "USER_ROLES",
    "Activation",
    "ActivationStatus",
    "ActivationVersion",
    "AuditLog",
    "Base",
    "Client",
    "ClientStatus",
    "LlmUsage",
    "User",
    "UserRole",
    "UtcDateTime",
    "alembic_config",
    "current_revision",
    "dispose_engines",
    "downgrade",
    "make_engine",
    "normalize_url",
    "record_llm_usage",
    "session_factory",
    "session_scope",
    "upgrade",
    "utcnow",
]
