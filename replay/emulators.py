"""The emulators ``replay serve`` can wrap: moto by default, or any WSGI app by import path."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .adapters import StateAdapter
from .adapters.moto import MotoAdapter, keep_signing_keys
from .errors import ConfigError
from .seeding import Seeder, moto_seeder, on_import

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["Emulator", "load_emulator", "moto_emulator"]


@dataclasses.dataclass(frozen=True)
class Emulator:
    """A WSGI app, what the health endpoint says about it, and how its randomness is seeded per call."""

    app: WSGIApplication
    services: Callable[[], Iterable[str]] = tuple
    seeder: Seeder | None = None
    reset: Callable[[], None] | None = None
    adapter: StateAdapter | None = None
    reset_path: str | None = None


def moto_emulator() -> Emulator:
    """moto's server app: one WSGI app dispatching to every moto service."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    except ImportError as exc:  # pragma: no cover - moto[server] is a dependency
        raise ConfigError("--app", "moto", hint=f"moto[server] is not importable: {exc}") from exc
    app = DomainDispatcherApplication(create_backend_app)

    def reset() -> None:
        from .entry import Request
        from .transport import WSGITransport

        WSGITransport(app).send(Request("POST", "/moto-api/reset", "", [], b""))

    adapter = MotoAdapter()
    on_import("moto.sns.models", keep_signing_keys)  # the key SNS signs with is state: keep it with the subscription
    return Emulator(
        app, lambda: sorted(adapter.services()), moto_seeder(), reset, adapter, reset_path="/moto-api/reset"
    )


def load_emulator(spec: str) -> Emulator:
    """``"moto"``, or ``"package.module:attribute"`` naming a WSGI app (or a factory returning one)."""
    if spec == "moto":
        return moto_emulator()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError("--app", spec, hint="'moto' or 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("--app", spec, hint=f"cannot import {module_name}: {exc}") from None
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise ConfigError("--app", spec, hint=f"{module_name} has no attribute {attribute}") from None
    if not callable(app):
        raise ConfigError("--app", spec, hint="not a WSGI application")
    return Emulator(app)
