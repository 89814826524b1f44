"""Which addresses a connection to a client-supplied host may reach.

:meth:`EgressPolicy.check` resolves a host once and answers the addresses to connect to, or
raises :class:`EgressRefused` naming the host and why. Refused, unless an operator allow-lists
the host or its network in ``AGENCY_EGRESS_ALLOW``: loopback, private, link-local (cloud
metadata ``169.254.169.254`` included), unique-local, multicast, reserved and unspecified
addresses, also when written as IPv4-mapped IPv6, NAT64 or 6to4, or as decimal, octal or hex
IPv4 (the resolver turns every spelling into the address it means, and that address is what is
checked). The platform's own services (Prefect API and its database, platform DB, Vault, Redis,
gateway, portal) are refused on their ports even inside an allow-listed range. A client may
also be allowed named loopback services of its own (the demo's, :mod:`agency.egress.scoped`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

from agency.egress.scoped import client_allowances, current_client
from agency.errors import PermanentNodeError, TransientNodeError
from agency.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_WILDCARDS = {"", "0.0.0.0", "::", "*"}


class EgressRefused(PermanentNodeError):
    """A connection to a client-supplied address that the egress policy does not allow."""

    def __init__(self, host: str, reason: str) -> None:
        self.host, self.reason = host, reason
        super().__init__(
            f"Refusing to connect to {host}: {reason}. An operator can allow a host on a "
            "private network with AGENCY_EGRESS_ALLOW."
        )


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host`` (every IPv4 spelling included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_resolver: Resolver = system_resolve


def set_resolver(resolver: Resolver | None) -> None:
    """Resolve names with ``resolver`` (``None``: the system's); for tests, never the network."""
    global _resolver
    _resolver = resolver or system_resolve
    _cached_policy.cache_clear()


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _why_not_public(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address, or None when it is one."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        return _why_not_public(inner)
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_private:
        return "a private network address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def _plain(address: IPAddress) -> IPAddress:
    return _embedded_ipv4(address) or address


@dataclass(frozen=True)
class EgressPolicy:
    """Allow-list and platform endpoints; :meth:`check` applies them to one host and port."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    #: (address or ``*`` for a wildcard bind, port) of the platform's own services
    platform: frozenset[tuple[str, int]] = frozenset()
    resolver: Resolver = field(default=system_resolve, compare=False)
    #: ``(host, port)`` pairs one client may reach whatever their address (the demo's services,
    #: see :mod:`agency.egress.scoped`), applied inside that client's ``client_scope``
    client_allow: Mapping[str, frozenset[tuple[str, int]]] = field(
        default_factory=dict, compare=False
    )

    def _is_platform(self, address: IPAddress, port: int) -> bool:
        plain = _plain(address)
        if (str(plain), port) in self.platform or (str(address), port) in self.platform:
            return True
        return ("*", port) in self.platform and _why_not_public(plain) is not None

    def _allowed(self, host: str, address: IPAddress) -> bool:
        if host in self.allow_hosts:
            return True
        return any(_plain(address) in net or address in net for net in self.allow_networks)

    def check(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` once; the addresses to connect to, all of them checked.

        Raises :class:`EgressRefused` when any address is refused (a name that answers both a
        public and a private address is refused) and ``TransientNodeError`` when the name does
        not resolve now (DNS may answer on a retry).
        """
        name = (host or "").strip().strip("[]").rstrip(".").lower()
        if not name:
            raise EgressRefused(repr(host), "no host was given")
        try:
            answers = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(name, port)]
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise TransientNodeError(f"Cannot resolve {host}: {reason}.") from None
        except ValueError:
            raise EgressRefused(
                host, "the resolver answered something that is not an address"
            ) from None
        if not answers:
            raise TransientNodeError(f"Cannot resolve {host}: no address.")
        client = current_client()
        for_client = client is not None and (name, port) in self.client_allow.get(client, ())
        for address in answers:
            if self._is_platform(address, port):
                raise EgressRefused(
                    f"{host}:{port}", f"{address} is one of the platform's own services"
                )
            if for_client or self._allowed(name, address):
                continue
            why = _why_not_public(address)
            if why is not None:
                inner = _embedded_ipv4(address)
                shown = f"{inner} inside {address}" if inner else str(address)
                raise EgressRefused(host, f"it is {why} ({shown})")
        return answers

    def check_url(self, url: str, default_port: int | None = None) -> list[IPAddress]:
        """:meth:`check` the host and port of an absolute URL."""
        parts = urlsplit(url)
        scheme_port = {"http": 80, "https": 443}.get(parts.scheme, default_port)
        try:
            port = parts.port or scheme_port
        except ValueError:
            raise EgressRefused(url, "its port is not a number") from None
        if not parts.hostname or port is None:
            raise EgressRefused(url, "it is not an absolute URL with a host")
        return self.check(parts.hostname, port)


def _allow_list(entries: Iterable[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        entry = entry.strip().strip("[]").rstrip(".").lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry)
    return frozenset(hosts), tuple(networks)


def _endpoint(url: str | None, default_port: int | None = None) -> tuple[str, int] | None:
    """``(host, port)`` of a URL or ``host:port``; None when it names no network service."""
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"//{url}")
    try:
        port = parts.port
    except ValueError:
        return None
    port = port or {"http": 80, "https": 443}.get(parts.scheme) or default_port
    host = parts.hostname or ""
    if port is None or (not host and url.startswith("sqlite")):
        return None
    return host, port


def platform_endpoints(settings: Settings, environ: Mapping[str, str]) -> list[tuple[str, int]]:
    """``(host, port)`` of every service of the platform that these settings name."""
    api = environ.get("PREFECT_API_URL") or f"http://{settings.api_host}:{settings.api_port}/api"
    server_host = environ.get("PREFECT_SERVER_API_HOST")
    server = f"{server_host}:{environ.get('PREFECT_SERVER_API_PORT', '4200')}"
    redis_host = environ.get("PREFECT_REDIS_MESSAGING_HOST")
    redis = f"{redis_host}:{environ.get('PREFECT_REDIS_MESSAGING_PORT', '6379')}"
    candidates = [
        _endpoint(api),
        _endpoint(server if server_host else None),
        _endpoint(environ.get("PREFECT_API_DATABASE_CONNECTION_URL"), 5432),
        _endpoint(settings.database_url, 5432),
        _endpoint(settings.vault_addr, 8200),
        _endpoint(redis if redis_host else None),
        _endpoint(environ.get("PREFECT_REDIS_MESSAGING_URL"), 6379),
        _endpoint(environ.get("PREFECT_SERVER_DOCKET_URL"), 6379),
        (settings.gateway_host, settings.gateway_port),
        (settings.portal_host, settings.portal_port),
        *(_endpoint(extra) for extra in settings.egress_platform_endpoints),
    ]
    return [c for c in dict.fromkeys(candidates) if c is not None]


def _platform_addresses(
    endpoints: Iterable[tuple[str, int]], resolver: Resolver
) -> frozenset[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for host, port in endpoints:
        name = host.strip("[]").rstrip(".").lower()
        if name in _WILDCARDS:
            found.add(("*", port))
            continue
        try:
            found.update((str(_plain(ipaddress.ip_address(a))), port) for a in resolver(name, port))
        except (OSError, UnicodeError, ValueError):
            continue  # a service that does not resolve here cannot be reached from here either
    return frozenset(found)


@lru_cache(maxsize=8)
def _cached_policy(
    allow: tuple[str, ...], endpoints: tuple[tuple[str, int], ...], resolver: Resolver
) -> EgressPolicy:
    hosts, networks = _allow_list(allow)
    return EgressPolicy(hosts, networks, _platform_addresses(endpoints, resolver), resolver)


def egress_policy(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> EgressPolicy:
    """The policy of these settings (default: the process's), platform endpoints resolved."""
    if settings is None:
        from agency.settings import get_settings

        settings = get_settings()
    env = os.environ if environ is None else environ
    endpoints = tuple(platform_endpoints(settings, env))
    policy = _cached_policy(tuple(settings.egress_allow), endpoints, _resolver)
    allowances = client_allowances(settings.home)
    return dataclasses.replace(policy, client_allow=allowances) if allowances else policy
