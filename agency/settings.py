"""Platform settings, read once from ``AGENCY_*`` environment variables (or ``.env``).

Call :func:`get_settings` at start-up and pass the object down; nothing reads ``os.environ`` at
import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything configurable about the platform; environment variables use the AGENCY_ prefix."""

    model_config = SettingsConfigDict(env_prefix="AGENCY_", env_file=".env", extra="ignore")

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

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def platform_database_url(self) -> str:
        """The platform DB URL, defaulting to SQLite in the platform home."""
        return self.database_url or f"sqlite:///{self.home / 'agency.db'}"

    @property
    def uses_vault(self) -> bool:
        """True when Vault is the configured secret store."""
        return bool(self.vault_addr)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first call."""
    return Settings()
