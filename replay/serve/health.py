"""What the server says about itself: LocalStack's health and session documents, and replay's own.

``GET /_localstack/health`` answers as LocalStack's does::

    {"services": {"s3": "running", "sqs": "available", ...}, "edition": "community", "version": "0.1.0",
     "features": {"persistence": "initialized", "initScripts": "initialized"},
     "status": "running", "persistence": {...the backend's status...}}

A service is ``running`` once it holds state or has had traffic (the emulator made a backend for it),
``available`` before, and ``error`` when its saved state could not be loaded (it answers 500 until that is
mended); every service of the emulator is served, so none is ``disabled``, also with persistence off
(``features.persistence`` says ``disabled`` then).  Service names are LocalStack's (botocore's:
``lambda``, ``cognito-idp``, ``stepfunctions``), not moto's module names.  ``features.persistence`` is
``initialized`` once restored, ``initializing`` before (the answer is then 503), ``disabled`` without
persistence, and ``error`` while the backend refuses writes because persistence failed (the
``persistence.error`` object says why).

``GET /_localstack/info`` has exactly the keys of LocalStack's ``SessionInfo`` (its OpenAPI document
allows no others); what is replay's own is under ``GET /_replay/info``.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import platform
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

__all__ = ["EDITION", "SessionFacts", "localstack_name", "service_states"]

EDITION = "community"

_MOTO_NAMES = {"awslambda": "lambda"}  # moto's module names that are not botocore's with the dashes removed


@functools.cache
def _botocore_names() -> dict[str, str]:
    """botocore's service names by their spelling without dashes (``cognitoidp`` -> ``cognito-idp``)."""
    try:
        import botocore.session

        names = botocore.session.get_session().get_available_services()
    except Exception:  # botocore missing or unreadable: moto's names are the best there is
        return {}
    return {name.replace("-", ""): name for name in names}


def localstack_name(service: str) -> str:
    """The name LocalStack gives moto's service ``service`` (botocore's: ``awslambda`` -> ``lambda``)."""
    if service in _MOTO_NAMES:
        return _MOTO_NAMES[service]
    return _botocore_names().get(service, service)


def service_states(services: Iterable[str], running: Iterable[str], failed: Iterable[str] = ()) -> dict[str, str]:
    """``{localstack name: available | running | error}`` for the emulator's ``services``."""
    running, failed = set(running), set(failed)
    states: dict[str, str] = {}
    for service in sorted(services):
        state = "error" if service in failed else "running" if service in running else "available"
        states[localstack_name(service)] = state
    return states


def _machine_id() -> str:
    """A stable id of this machine that does not reveal it: a digest of ``/etc/machine-id`` (or the host name)."""
    try:
        seed = Path("/etc/machine-id").read_text().strip()
    except OSError:
        seed = ""
    seed = seed or socket.gethostname()
    return "gen_" + hashlib.sha256(f"replay:{seed}".encode()).hexdigest()[:12]


def _in_docker() -> bool:
    if Path("/.dockerenv").exists():
        return True
    try:
        return "docker" in Path("/proc/1/cgroup").read_text()
    except OSError:
        return False


class SessionFacts:
    """The facts of this server's run that ``/_localstack/info`` reports, fixed when it starts."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.session_id = str(uuid.uuid4())
        self.machine_id = _machine_id()
        self.system = platform.system().lower()
        self.is_docker = _in_docker()
        self.started = time.monotonic()

    def info(self) -> dict[str, object]:
        """LocalStack's ``SessionInfo``: these keys and no others."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        return {
            "version": self.version,
            "edition": EDITION,
            "is_license_activated": False,
            "session_id": self.session_id,
            "machine_id": self.machine_id,
            "system": self.system,
            "is_docker": self.is_docker,
            "server_time_utc": now.isoformat(timespec="seconds"),
            "uptime": int(time.monotonic() - self.started),
        }
