"""The gateway face: the ASGI app with the webhook route, the client API, health and metrics.

``python -m gateway`` serves it; ``agency gateway`` starts that process.
"""

from gateway.app import create_app
from gateway.intake import MAX_BODY_BYTES, Gateway

__all__ = ["MAX_BODY_BYTES", "Gateway", "create_app"]
