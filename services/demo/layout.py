"""Where the demo's services listen and keep their files, from the platform settings."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from agency.keyfiles import secret_file
from agency.settings import Settings


@dataclass(frozen=True)
class DemoLayout:
    """Addresses and files of the demo services for one platform home."""

    host: str
    smtp_port: int
    http_port: int
    directory: Path

    @classmethod
    def of(cls, settings: Settings) -> DemoLayout:
        """The layout these settings give (``<home>/demo``, ``AGENCY_DEMO_*`` ports)."""
        return cls(
            settings.demo_host,
            settings.demo_smtp_port,
            settings.demo_http_port,
            settings.home / "demo",
        )

    @property
    def http_url(self) -> str:
        """Base URL of the sample API and the demo model."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def llm_base_url(self) -> str:
        """What an ``openai`` credential's ``base_url`` is for the demo model."""
        return f"{self.http_url}/v1"

    @property
    def inbox(self) -> Path:
        """The mail catcher's Maildir."""
        return self.directory / "inbox"

    @property
    def endpoints(self) -> list[str]:
        """``host:port`` of every demo service (the demo client's egress allowance)."""
        return [f"{self.host}:{self.smtp_port}", f"{self.host}:{self.http_port}"]

    def llm_key(self) -> str:
        """The demo model's API key, generated once into ``<home>/demo/llm-key`` (0600)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return secret_file(self.directory / "llm-key", lambda: "demo-" + secrets.token_hex(16))
