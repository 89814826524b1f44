"""OAuth2 connections: providers as configuration, the agency's app registrations, Authlib's
client over the egress guard, and fresh access tokens at run time."""

from blocks.oauth.apps import OAUTH_AREA, OAuthApp, delete_app, list_apps, load_app, save_app
from blocks.oauth.client import OAuth2Error, OAuthSession, generate_token
from blocks.oauth.providers import BUILTIN_PROVIDERS, OAuthProvider
from blocks.oauth.tokens import (
    LEEWAY_SECONDS,
    needs_reconnect_message,
    oauth_credential,
    refresh_credential,
    token_fields,
)

__all__ = [
    "BUILTIN_PROVIDERS",
    "LEEWAY_SECONDS",
    "OAUTH_AREA",
    "OAuth2Error",
    "OAuthApp",
    "OAuthProvider",
    "OAuthSession",
    "delete_app",
    "generate_token",
    "list_apps",
    "load_app",
    "needs_reconnect_message",
    "oauth_credential",
    "refresh_credential",
    "save_app",
    "token_fields",
]
