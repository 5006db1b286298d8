"""A small Flask "cloud" emulator that is not moto: every value it makes comes from the clock or randomness.

Used by tests/e2e/test_generic_emulator.py behind ``replay serve --app 'flask_emulator:create_app(...)'`` and
``replay.persist``.  Orders get ``uuid4`` ids (used in URLs), ``uuid1`` traces, ``time.time()`` generations
(``ifGenerationMatch`` preconditions, as Google Cloud Storage has them), ``datetime.now``/``utcnow``/
``date.today`` timestamps, ``time.time_ns`` stamps, ``random`` numbers, ``secrets`` tokens, ``os.urandom``
etags and ``SystemRandom`` draws; a project gets a ``random.getrandbits`` number.  Some names are bound with
``from ... import`` at import time, as real code does.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import threading
import time
import uuid
from datetime import date, datetime
from os import urandom
from random import random as uniform
from time import time as now
from typing import Any

from flask import Flask, abort, jsonify, request


def _order(item: object) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "trace": str(uuid.uuid1()),
        "item": item,
        "generation": int(time.time() * 1_000_000),
        "bound_clock": now(),
        "created": datetime.now().isoformat(),
        "created_utc": dt.datetime.utcnow().isoformat(),
        "created_tz": datetime.now(dt.timezone.utc).isoformat(),
        "day": date.today().isoformat(),
        "stamp_ns": time.time_ns(),
        "number": random.randint(1, 10**9),
        "score": random.random(),
        "bound_score": uniform(),
        "pick": random.choice(["red", "green", "blue", "amber"]),
        "token": secrets.token_hex(16),
        "url_token": secrets.token_urlsafe(12),
        "secret_pick": secrets.choice("abcdefgh"),
        "below": secrets.randbelow(10**6),
        "etag": os.urandom(8).hex(),
        "bound_etag": urandom(4).hex(),
        "system": random.SystemRandom().random(),
    }


def create_app(testing: bool = False, project: str = "demo") -> Flask:
    """The emulator (a factory, as Flask apps usually have one)."""
    app = Flask(__name__)
    app.config["TESTING"] = testing
    orders: dict[str, dict[str, Any]] = {}
    projects: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    @app.post("/v1/orders")
    def create_order() -> Any:
        body = request.get_json(force=True, silent=True) or {}
        order = _order(body.get("item"))
        with lock:
            orders[order["id"]] = order
        return jsonify(order), 201

    @app.get("/v1/orders")
    def list_orders() -> Any:
        with lock:
            return jsonify([orders[key] for key in sorted(orders)])

    @app.get("/v1/orders/<order_id>")
    def get_order(order_id: str) -> Any:
        with lock:
            if order_id not in orders:
                abort(404)
            return jsonify(orders[order_id])

    @app.patch("/v1/orders/<order_id>")
    def update_order(order_id: str) -> Any:
        body = request.get_json(force=True, silent=True) or {}
        with lock:
            order = orders.get(order_id)
            if order is None:
                abort(404)
            wanted = request.args.get("ifGenerationMatch")
            if wanted is not None and int(wanted) != order["generation"]:
                abort(412)
            order["item"] = body.get("item", order["item"])
            order["generation"] = int(time.time() * 1_000_000)
            order["updated"] = datetime.now().isoformat()
            order["etag"] = os.urandom(8).hex()
            return jsonify(order)

    @app.delete("/v1/orders/<order_id>")
    def delete_order(order_id: str) -> Any:
        with lock:
            if orders.pop(order_id, None) is None:
                abort(404)
        return "", 204

    @app.post("/v1/projects")
    def create_project() -> Any:
        body = request.get_json(force=True, silent=True) or {}
        name = str(body.get("name") or project)
        record = {"name": name, "number": random.getrandbits(40), "created": time.time()}
        with lock:
            projects[name] = record
        return jsonify(record), 201

    @app.get("/v1/projects/<name>")
    def get_project(name: str) -> Any:
        with lock:
            if name not in projects:
                abort(404)
            return jsonify(projects[name])

    return app


app = create_app()


class NotAnApp:
    """A class: naming it is refused (an instance would be needed)."""


def three_factory(first: int, second: int, third: int) -> Flask:
    """A factory that needs arguments: naming it bare is refused."""
    return create_app()


def broken_factory() -> Flask:
    raise RuntimeError("the database is not there")


def returns_none() -> None:
    return None


VALUE = 42
