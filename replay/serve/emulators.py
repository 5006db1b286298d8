"""The emulators ``replay serve`` can wrap: moto by default, or any WSGI app by import path."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import os
import sys
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import orjson

from ..adapters import StateAdapter
from ..adapters.moto import MotoAdapter, keep_signing_keys
from ..errors import ConfigError
from ..record.classify import Classifier, DefaultClassifier, service_reset
from ..record.seeding import Seeder, generic_seeder, moto_seeder, on_import

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Emulator", "ServiceResets", "load_emulator", "moto_emulator"]


@dataclasses.dataclass(frozen=True)
class Emulator:
    """A WSGI app, what the health endpoint says about it, and how its randomness is seeded per call."""

    app: WSGIApplication
    services: Callable[[], Iterable[str]] = tuple
    seeder: Seeder | None = None
    reset: Callable[[], None] | None = None
    adapter: StateAdapter | None = None
    reset_path: str | None = None
    classifier: Classifier | None = None


def moto_emulator(seed: bool = True) -> Emulator:
    """moto's server app: one WSGI app dispatching to every moto service (``seed``: with :func:`moto_seeder`)."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    except ImportError as exc:  # pragma: no cover - moto[server] is a dependency
        raise ConfigError("--app", "moto", hint=f"moto[server] is not importable: {exc}") from exc
    adapter = MotoAdapter()
    app = ServiceResets(DomainDispatcherApplication(create_backend_app), adapter)

    def reset() -> None:
        from ..record.entry import Request
        from ..restore.transport import WSGITransport

        WSGITransport(app).send(Request("POST", "/moto-api/reset", "", [], b""))

    on_import("moto.sns.models", keep_signing_keys)  # the key SNS signs with is state: keep it with the subscription
    return Emulator(
        app,
        lambda: sorted(adapter.services()),
        moto_seeder() if seed else None,
        reset,
        adapter,
        reset_path="/moto-api/reset",
    )


class ServiceResets:
    """``app``, answering ``POST /_localstack/state/<service>/reset`` itself: that one service is emptied.

    It sits inside the persisted app, so the call is recorded (the classifier makes it a ``ResetState`` of
    that service) and a restart replays it; the server's control endpoint sends it here.
    """

    def __init__(self, app: WSGIApplication, adapter: StateAdapter) -> None:
        self.app = app
        self.adapter = adapter

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        name = service_reset(environ.get("PATH_INFO", "")) if environ.get("REQUEST_METHOD") == "POST" else None
        if name is None:
            return self.app(environ, start_response)
        service = self.adapter.service_for(name)
        if service is None:
            document: dict[str, str] = {"error": "unknown service", "message": f"{name!r} is not a service of moto"}
            status = "404 Not Found"
        else:
            self.adapter.reset(service)
            document, status = {"status": "ok", "service": name}, "200 OK"
        body = orjson.dumps(document)
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def load_emulator(spec: str, seed: bool = True) -> Emulator:
    """The emulator ``spec`` names: ``"moto"``, ``"package.module:app"`` (a WSGI app, taken as it is),
    ``"package.module:create_app(testing=True)"`` (a factory, called with those literal arguments) or
    ``"package.module:create_app"`` naming a function that takes no argument (called, as Flask does).

    With ``seed``, :func:`~replay.record.seeding.generic_seeder` is installed before the module is imported, so
    that every recorded call's clock and randomness come back on replay.  Calls that are no AWS calls are
    named after the app's ``service_for(environ)`` (an attribute of the app or a function of its module),
    else after their path (:func:`~replay.record.classify.service_from_path`).

    :raises ConfigError: the module cannot be imported, the name is not in it, an argument is not a
        literal, the factory failed, or what it names is not a WSGI application (one line each).
    """
    if spec == "moto":
        return moto_emulator(seed)
    module_name, _, expression = spec.partition(":")
    if not module_name or not expression.strip():
        raise ConfigError("--app", spec, hint="'moto', 'package.module:app' or 'package.module:create_app()'")
    seeder = generic_seeder() if seed else None  # first: names the module binds at import are the hooked ones
    if "" not in sys.path and os.getcwd() not in sys.path:  # the console script: find the app where it runs,
        sys.path.insert(0, os.getcwd())  # as `python -m replay`, flask and gunicorn do
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError, or the module failing as it runs
        raise ConfigError("--app", spec, hint=f"cannot import {module_name}: {_one_line(exc)}") from None
    app = _resolve(spec, module, expression.strip())
    service_for = getattr(app, "service_for", None) or getattr(module, "service_for", None)
    if service_for is not None and not callable(service_for):
        raise ConfigError("--app", spec, hint="its service_for is not callable: it must take a WSGI environ")
    return Emulator(app, seeder=seeder, classifier=DefaultClassifier(service_for=service_for, name_by_path=True))


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _lookup(spec: str, module: types.ModuleType, node: ast.expr) -> Any:
    """The object a dotted name in ``module`` refers to."""
    if isinstance(node, ast.Name):
        if not hasattr(module, node.id):
            raise ConfigError("--app", spec, hint=f"{module.__name__} has no attribute {node.id}")
        return getattr(module, node.id)
    if isinstance(node, ast.Attribute):
        owner = _lookup(spec, module, node.value)
        if not hasattr(owner, node.attr):
            raise ConfigError("--app", spec, hint=f"{ast.unparse(node.value)} has no attribute {node.attr}")
        return getattr(owner, node.attr)
    raise ConfigError("--app", spec, hint="name an attribute ('app') or a factory call ('create_app()')")


def _literal(spec: str, node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError(
            "--app", spec, hint=f"the factory's arguments must be literals, not {ast.unparse(node)!r}"
        ) from None


def _resolve(spec: str, module: types.ModuleType, expression: str) -> WSGIApplication:
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise ConfigError("--app", spec, hint=f"{expression!r} is neither a name nor a call") from None
    if isinstance(node, ast.Call):
        factory = _lookup(spec, module, node.func)
        if not callable(factory):
            raise ConfigError("--app", spec, hint=f"{ast.unparse(node.func)} is not callable")
        args = [_literal(spec, arg) for arg in node.args]
        if any(keyword.arg is None for keyword in node.keywords):
            raise ConfigError("--app", spec, hint="the factory's arguments must be literals, not **mappings")
        kwargs = {keyword.arg: _literal(spec, keyword.value) for keyword in node.keywords if keyword.arg}
        try:
            app = factory(*args, **kwargs)
        except Exception as exc:
            raise ConfigError("--app", spec, hint=f"the factory failed: {_one_line(exc)}") from None
    else:
        app = _lookup(spec, module, node)
        bare_factory = inspect.isfunction(app) or (
            isinstance(app, type) and any("__call__" in vars(klass) for klass in app.__mro__[:-1])
        )
        if bare_factory and _takes_none(app):  # a factory named bare: a function, or a class of WSGI apps
            try:
                app = app()
            except Exception as exc:
                raise ConfigError("--app", spec, hint=f"the factory failed: {_one_line(exc)}") from None
    problem = _not_wsgi(app)
    if problem is not None:
        raise ConfigError("--app", spec, hint=f"not a WSGI application: {problem}")
    return cast("WSGIApplication", app)


def _signature(target: object) -> inspect.Signature | None:
    try:
        return inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _takes_two(target: object) -> bool:
    signature = _signature(target)
    if signature is None:
        return True
    try:
        signature.bind(object(), object())
    except TypeError:
        return False
    return True


def _takes_none(target: object) -> bool:
    signature = _signature(target)
    if signature is None:
        return False
    try:
        signature.bind()
    except TypeError:
        return False
    return True


def _not_wsgi(app: object) -> str | None:
    """Why ``app`` cannot be called as ``app(environ, start_response)``; ``None`` when it can."""
    if app is None:
        return "it is None (does the factory return the app?)"
    if isinstance(app, type) and not (hasattr(app, "__iter__") and _takes_two(app)):
        # PEP 3333 allows a class whose instances, made from (environ, start_response), are the response
        return f"{app.__name__} is a class that makes no WSGI response (name an instance, or a factory call)"
    if isinstance(app, types.ModuleType):
        return f"{app.__name__} is a module"
    if not callable(app):
        return f"it is a {type(app).__name__}, which cannot be called"
    if not _takes_two(app):
        return f"it cannot be called with (environ, start_response): its signature is {_signature(app)}"
    return None
