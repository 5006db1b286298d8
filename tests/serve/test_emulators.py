"""`--app`: a WSGI app taken as it is, a factory called with literal arguments, and clear refusals."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from replay.errors import ConfigError
from replay.record.classify import DefaultClassifier, path_template, service_from_path
from replay.record.entry import Request
from replay.serve.emulators import load_emulator

APP_MODULE = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("PATH_INFO", "").encode()]


class Factory:
    pass


def create_app(greeting="hello", *, loud=False):
    text = greeting.upper() if loud else greeting

    def made(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]

    made.service_for = lambda environ: "greeter"
    return made


def service_for(environ):
    return "module-level"


instance = Factory()
"""


@pytest.fixture
def module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "sample_wsgi_app.py").write_text(APP_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield "sample_wsgi_app"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("sample_wsgi_app", None)


def _body(spec: str) -> bytes:
    return Client(load_emulator(spec, seed=False).app).get("/x").data


def test_an_app_is_taken_as_it_is_and_factories_are_called(module: str) -> None:
    assert _body(f"{module}:app") == b"/x"
    assert _body(f"{module}:create_app") == b"hello"
    assert _body(f"{module}:create_app()") == b"hello"
    assert _body(f"{module}:create_app('hi', loud=True)") == b"HI"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("Factory", "Factory is a class"),
        ("instance", "cannot be called"),
        ("create_app(print)", "arguments must be literals"),
        ("create_app(**{})", "literals, not **mappings"),
        ("create_app(1, 2, 3)", "the factory failed: TypeError"),
        ("nothing", "has no attribute nothing"),
        ("app.nothing", "app has no attribute nothing"),
        ("1 + ", "neither a name nor a call"),
        ("[app]", "name an attribute"),
    ],
)
def test_what_is_not_a_wsgi_app_is_refused_in_one_line(module: str, expression: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_emulator(f"{module}:{expression}", seed=False)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_service_for_hook_of_the_app_wins_over_the_module_one(module: str) -> None:
    emulator = load_emulator(f"{module}:create_app()", seed=False)
    assert emulator.classifier is not None
    assert emulator.classifier(Request("POST", "/v1/things", "", [], b"")).service == "greeter"
    plain = load_emulator(f"{module}:app", seed=False)
    assert plain.classifier is not None
    assert plain.classifier(Request("POST", "/v1/things", "", [], b"")).service == "module-level"


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/orders/42", "orders"),
        ("/api/v1/users/7", "users"),
        ("/storage/v1/b/photos/o", "storage"),
        ("/v2beta1/projects/p", "projects"),
        ("/2024-01-01/functions", "functions"),
        ("/", "root"),
        ("/api/v1", "root"),
        ("/Weird%20Name!/x", "weird-name"),
    ],
)
def test_service_from_path(path: str, service: str) -> None:
    assert service_from_path(path) == service


def test_path_templates_fold_ids_and_numbers() -> None:
    assert path_template("/v1/orders/4f1c2a9e-5d3b-4c8e-9f7a-1b2c3d4e5f60") == "/v1/orders/{id}"
    assert path_template("/v1/orders/42/items/7") == "/v1/orders/{id}/items/{id}"
    assert path_template("/v1/orders/summer-sale") == "/v1/orders/summer-sale"


def test_aws_calls_keep_their_names_with_path_naming_on() -> None:
    classifier = DefaultClassifier(name_by_path=True)
    request = Request("POST", "/", "", [("X-Amz-Target", "AmazonSQS.CreateQueue")], b"{}")
    assert classifier(request).service == "sqs"
    assert DefaultClassifier()(Request("POST", "/orders", "", [], b"")).service == "unknown"


def test_a_failing_service_for_falls_back_to_the_path() -> None:
    def broken(environ: object) -> str:
        raise RuntimeError("boom")

    assert DefaultClassifier(service_for=broken)(Request("POST", "/orders/1", "", [], b"")).service == "orders"
