"""Where the hub may send requests on a principal's behalf (webhook targets): server-side
request forgery defence.

A webhook URL must be http or https, name a host, carry no credentials, and every address the
host resolves to must be public: private (RFC 1918, unique local), loopback, link-local (the
cloud metadata service at 169.254.169.254), shared, reserved, multicast and unspecified
addresses are refused, IPv4-mapped IPv6 included. An operator lists exceptions in
``HUB_WEBHOOK_ALLOWED_HOSTS`` (host names, exact, or IPs/CIDRs). The API checks at creation;
the notifier checks again before each delivery (DNS may have changed since) and connects to
the very address it checked (no second lookup in between: DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from hub.errors import InvalidInput

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class TargetRefused(InvalidInput, ValueError):
    """A webhook URL the hub will not send to; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts and the addresses it may be reached at."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ip(text: str) -> IP:
    ip = ipaddress.ip_address(text.split("%", 1)[0])  # a scoped IPv6 address: drop the zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_public(ip: IP) -> bool:
    return ip.is_global and not ip.is_multicast


def _allowed(host: str, address: IP | None, allowed: Sequence[str]) -> bool:
    for entry in allowed:
        entry = entry.strip().lower()
        if entry == host:
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # a host name: compared above
    return False


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a webhook URL, or TargetRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"url: not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("url: only http and https webhooks")
    if not parts.hostname:
        raise TargetRefused("url: no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("url: no credentials in the URL (the signature authenticates)")
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def check(url: str, allowed: Sequence[str], resolver: Resolver = resolve) -> Target:
    """The target of ``url``, every address it resolves to checked; TargetRefused otherwise."""
    scheme, host, port = parse(url)
    try:
        addresses = [host] if _literal(host) else resolver(host, port)
    except (OSError, UnicodeError, ValueError) as exc:  # UnicodeError: not a valid IDNA name
        raise TargetRefused(f"url: host {host} does not resolve ({exc})") from exc
    if not addresses:
        raise TargetRefused(f"url: host {host} does not resolve")
    for address in addresses:
        ip = _ip(address)
        if not is_public(ip) and not _allowed(host, ip, allowed):
            raise TargetRefused(
                f"url: {host} is (or resolves to) {ip}, a private, loopback, link-local or "
                "reserved address; an operator may allow it in HUB_WEBHOOK_ALLOWED_HOSTS"
            )
    return Target(url, scheme, host, port, tuple(addresses))


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
