"""Which requests may reach the control endpoints: no web page, no rebound DNS name.

The control endpoints (``/_localstack/state/...``, ``POST /_localstack/health``,
``/_replay/...``, and moto's ``/moto-api/...``) can empty or replace the whole
state.  A web page the user visits could post to them (a cross-site request),
or reach them through a DNS name that resolves to 127.0.0.1 (DNS rebinding).
:class:`ControlAccess` refuses, with a reason, a control request

* whose ``Origin`` header is not an allowed origin: a loopback origin
  (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``[::1]``,
  ``localhost.localstack.cloud`` and its subdomains, any port),
  ``https://app.localstack.cloud``, or one listed in
  ``EXTRA_CORS_ALLOWED_ORIGINS``; ``DISABLE_CORS_CHECKS=1`` turns this check
  off, as in LocalStack; a request without ``Origin`` (SDKs, curl) passes;
* whose ``Host`` is not ``localhost``, a loopback address, the address the
  server is bound to, this machine's host name,
  ``*.localhost.localstack.cloud``, or a name listed in
  ``REPLAY_ALLOWED_HOSTS`` (``*.example.test`` matches subdomains).

AWS API requests are not checked: virtual-hosted S3 names
(``bucket.localhost``, ``bucket.s3.amazonaws.com``) keep working.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["CONTROL_PREFIXES", "ControlAccess"]

CONTROL_PREFIXES = ("/_localstack/", "/_replay/", "/moto-api/")
_LOOPBACK_NAMES = ("localhost", "localhost.localstack.cloud")
_DEFAULT_ORIGINS = frozenset({"https://app.localstack.cloud", "http://app.localstack.cloud"})


def _host_name(value: str) -> str:
    """The host of a ``Host`` header value or an origin's netloc, without its port, lower-cased."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:4566
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith((".localhost", ".localhost.localstack.cloud")):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _matches(host: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


class ControlAccess:
    """Decides whether a control request may go on (see the module docstring).

    :param bound: the address the server listens on (``0.0.0.0``/``::`` add this machine's name).
    :param allowed_hosts: ``REPLAY_ALLOWED_HOSTS``: more names the ``Host`` header may carry.
    :param extra_origins: ``EXTRA_CORS_ALLOWED_ORIGINS``: more origins allowed.
    :param check_origins: ``False`` under ``DISABLE_CORS_CHECKS=1``.
    """

    def __init__(
        self,
        bound: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
        extra_origins: Iterable[str] = (),
        check_origins: bool = True,
    ) -> None:
        hosts = {_host_name(host) for host in allowed_hosts if host.strip()}
        bound = _host_name(bound)
        if bound in ("0.0.0.0", "::", ""):
            hosts.add(socket.gethostname().lower())
        else:
            hosts.add(bound)
        self.hosts = frozenset(hosts)
        self.origins = _DEFAULT_ORIGINS | {origin.strip().rstrip("/").lower() for origin in extra_origins if origin}
        self.check_origins = check_origins

    def refusal(self, path: str, host: str | None, origin: str | None) -> str | None:
        """Why a request to ``path`` with these headers is refused, or ``None``: it may go on."""
        if not path.startswith(CONTROL_PREFIXES):
            return None
        if host:
            name = _host_name(host)
            if not (_loopback(name) or _matches(name, self.hosts)):
                return (
                    f"Host {host!r} is not this server's: control endpoints answer localhost, loopback "
                    "addresses and the names in REPLAY_ALLOWED_HOSTS (against DNS rebinding)"
                )
        if origin and self.check_origins:
            normalised = origin.strip().rstrip("/").lower()
            if normalised not in self.origins:
                parts = urlsplit(normalised)
                if not (parts.scheme in ("http", "https") and _loopback(_host_name(parts.netloc))):
                    return (
                        f"Origin {origin!r} may not call control endpoints (a cross-site request): allow it with "
                        "EXTRA_CORS_ALLOWED_ORIGINS, or set DISABLE_CORS_CHECKS=1"
                    )
        return None
