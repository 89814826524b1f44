"""One egress policy for every connection to an address that came from a client.

See :mod:`agency.egress.policy` for what is refused and :mod:`agency.egress.http` /
:mod:`agency.egress.connect` for connections that go to the address that was checked.
"""

from agency.egress.connect import GuardedSMTP, GuardedSMTP_SSL, open_smtp, postgres_target
from agency.egress.http import (
    AsyncGuardedTransport,
    GuardedTransport,
    async_guarded_client,
    guarded_client,
)
from agency.egress.policy import (
    EgressPolicy,
    EgressRefused,
    egress_policy,
    platform_endpoints,
    set_resolver,
    system_resolve,
)
from agency.egress.scoped import client_scope, current_client

__all__ = [
    "AsyncGuardedTransport",
    "EgressPolicy",
    "EgressRefused",
    "GuardedSMTP",
    "GuardedSMTP_SSL",
    "GuardedTransport",
    "async_guarded_client",
    "client_scope",
    "current_client",
    "egress_policy",
    "guarded_client",
    "open_smtp",
    "platform_endpoints",
    "postgres_target",
    "set_resolver",
    "system_resolve",
]
