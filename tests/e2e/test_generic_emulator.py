"""Any Python WSGI emulator converges exactly: a Flask emulator that is not moto behind ``replay serve``.

``flask_emulator`` draws every value from the clock or randomness (uuid4 ids in URLs, ``time.time()``
generations, ``random``, ``secrets``, ``datetime.now``, ``os.urandom`` ...).  After SIGTERM and after kill -9,
every read answers byte-identical JSON, old ids keep working in URLs, generation preconditions still hold,
and the restore reports 0 diverged; also with 8 writer threads at once.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from conftest import ReplayServer, Servers, replay_cli, server_env

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
FACTORY = "flask_emulator:create_app(testing=True, project='acme')"
ENV = {"PYTHONPATH": str(HERE)}


def start(servers: Servers, data: Path, *args: str) -> ReplayServer:
    return servers.start(data, "--app", FACTORY, *args, env=ENV)


def post(server: ReplayServer, path: str, document: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(server.endpoint + path, json=document, timeout=10)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def reads(server: ReplayServer, ids: list[str], projects: list[str]) -> dict[str, bytes]:
    paths = ["/v1/orders", *(f"/v1/orders/{i}" for i in ids), *(f"/v1/projects/{p}" for p in projects)]
    found = {}
    for path in paths:
        answer = requests.get(server.endpoint + path, timeout=10)
        assert answer.status_code == 200, (path, answer.status_code)
        found[path] = answer.content
    return found


def assert_same(after: dict[str, bytes], before: dict[str, bytes]) -> None:
    """Byte-identical answers; on a difference, name the fields that differ."""
    for path, body in before.items():
        if after[path] != body:
            old, new = orjson.loads(body), orjson.loads(after[path])
            items = zip(old, new, strict=True) if isinstance(old, list) else [(old, new)]
            fields = sorted({k for o, n in items for k in set(o) | set(n) if o.get(k) != n.get(k)})
            pytest.fail(f"{path} differs after the restart in {fields}")


def patch_if(server: ReplayServer, order_id: str, generation: object, item: str) -> requests.Response:
    """Change an order's item, on condition that its generation is still ``generation``."""
    return requests.patch(
        f"{server.endpoint}/v1/orders/{order_id}",
        params={"ifGenerationMatch": generation},
        json={"item": item},
        timeout=10,
    )


def workload(server: ReplayServer) -> tuple[list[str], list[str]]:
    ids = [post(server, "/v1/orders", {"item": f"item-{n}"})["id"] for n in range(6)]
    first = requests.get(f"{server.endpoint}/v1/orders/{ids[0]}", timeout=10).json()
    updated = patch_if(server, ids[0], first["generation"], "changed")
    assert updated.status_code == 200, updated.text
    assert requests.delete(f"{server.endpoint}/v1/orders/{ids[5]}", timeout=10).status_code == 204
    post(server, "/v1/projects", {"name": "alpha"})
    post(server, "/v1/projects", {})
    return ids[:5], ["alpha", "acme"]


@pytest.mark.parametrize("stop", ["sigterm", "kill"])
def test_every_value_comes_back_byte_identical(servers: Servers, tmp_path: Path, stop: str) -> None:
    data = tmp_path / "volume"
    server = start(servers, data, "--fsync", "always")
    ids, projects = workload(server)
    before = reads(server, ids, projects)
    orders = orjson.loads(before["/v1/orders"])
    assert len({order["token"] for order in orders}) == len(orders)  # real randomness while recording
    if stop == "kill":
        server.kill()
    else:
        server.stop()
    again = start(servers, data)
    assert_same(reads(again, ids, projects), before)
    stderr = again.stderr()
    assert "Restored 10 API calls from persistent file" in stderr, stderr
    assert "0 replayed API calls diverged from their recording" in stderr, stderr
    # a client that kept the generation can still use it as a precondition
    kept = orjson.loads(before[f"/v1/orders/{ids[1]}"])
    answer = patch_if(again, ids[1], kept["generation"], "after restart")
    assert answer.status_code == 200, answer.text


def test_eight_concurrent_writers(servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "volume"
    server = start(servers, data)
    made: list[str] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        for round_ in range(5):
            order = post(server, "/v1/orders", {"item": f"w{number}-{round_}"})
            with lock:
                made.append(order["id"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 40
    before = reads(server, made, [])
    server.stop()
    again = start(servers, data)
    assert_same(reads(again, made, []), before)
    assert "0 replayed API calls diverged from their recording" in again.stderr()


def test_without_seeding_old_ids_keep_working_through_the_learned_mapping(servers: Servers, tmp_path: Path) -> None:
    """``--no-seed``: every id comes out differently on restore; clients keep using theirs all the same."""
    data = tmp_path / "volume"
    server = start(servers, data, "--no-seed")
    ids = [post(server, "/v1/orders", {"item": f"x{n}"})["id"] for n in range(3)]
    server.stop()

    again = start(servers, data, "--no-seed")
    stderr = again.stderr()
    assert "generated ids came out differently on restore" in stderr, stderr
    assert "diverged on replay" in stderr  # the values that are not ids (generations, times) differ: said so
    listed = requests.get(f"{again.endpoint}/v1/orders", timeout=10).json()
    assert sorted(order["id"] for order in listed) == sorted(ids)  # answers show the ids the client knows
    one = requests.get(f"{again.endpoint}/v1/orders/{ids[0]}", timeout=10)
    assert one.status_code == 200 and one.json()["id"] == ids[0] and one.json()["item"] == "x0"
    changed = requests.patch(f"{again.endpoint}/v1/orders/{ids[1]}", json={"item": "changed"}, timeout=10)
    assert changed.status_code == 200 and changed.json()["id"] == ids[1]
    assert requests.delete(f"{again.endpoint}/v1/orders/{ids[2]}", timeout=10).status_code == 204
    later = post(again, "/v1/orders", {"item": "after"})["id"]
    again.stop()

    third = start(servers, data, "--no-seed")  # the log holds the ids clients know: learned afresh
    listed = requests.get(f"{third.endpoint}/v1/orders", timeout=10).json()
    assert sorted((o["id"], o["item"]) for o in listed) == sorted(
        [(ids[0], "x0"), (ids[1], "changed"), (later, "after")]
    )


def test_calls_are_named_after_their_path_and_inspect_groups_them(servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "volume"
    server = start(servers, data)
    ids = [post(server, "/v1/orders", {"item": n})["id"] for n in range(3)]
    for order_id in ids:
        assert requests.delete(f"{server.endpoint}/v1/orders/{order_id}", timeout=10).status_code == 204
    post(server, "/v1/projects", {"name": "p"})
    assert [(e["service"], e["operation"]) for e in server.log_entries()] == [
        *[("orders", "POST /v1/orders")] * 3,
        *[("orders", "DELETE /v1/orders/{id}")] * 3,
        ("projects", "POST /v1/projects"),
    ]
    server.stop()
    inspected = replay_cli("inspect", str(data), "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert orjson.loads(inspected.stdout)["services"] == {
        "orders": {"DELETE /v1/orders/{id}": 3, "POST /v1/orders": 3},
        "projects": {"POST /v1/projects": 1},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("flask_emulator:NotAnApp", "NotAnApp is a class"),
        ("flask_emulator:three_factory", "cannot be called with (environ, start_response)"),
        ("flask_emulator:broken_factory", "the factory failed: RuntimeError: the database is not there"),
        ("flask_emulator:returns_none", "it is None"),
        ("flask_emulator:VALUE", "it is a int, which cannot be called"),
        ("flask_emulator:create_app(testing=VALUE)", "arguments must be literals"),
        ("flask_emulator:missing", "flask_emulator has no attribute missing"),
        ("flask_emulator:create_app(", "neither a name nor a call"),
        ("no_such_module:app", "cannot import no_such_module"),
    ],
)
def test_what_is_not_a_wsgi_app_is_refused_at_start(servers: Servers, tmp_path: Path, spec: str, message: str) -> None:
    done = servers.run(tmp_path / "volume", "--app", spec, env=ENV)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], done.stderr


@pytest.mark.parametrize("spec", ["flask_emulator:app", "flask_emulator:create_app", "flask_emulator:create_app()"])
def test_an_app_a_bare_factory_and_a_call_are_all_served(servers: Servers, tmp_path: Path, spec: str) -> None:
    server = servers.start(tmp_path / "volume", "--app", spec, env=ENV)
    assert post(server, "/v1/orders", {"item": "x"})["item"] == "x"


def test_replay_persist_seeds_any_app_by_default(tmp_path: Path) -> None:
    from flask_emulator import create_app
    from werkzeug.test import Client

    import replay

    first = Client(replay.persist(create_app(), tmp_path / "volume", fsync="always"))
    made = [first.post("/v1/orders", json={"item": n}).get_json()["id"] for n in range(4)]
    first.post("/v1/projects", json={"name": "p"})
    before = {path: first.get(path).data for path in ["/v1/orders", *(f"/v1/orders/{i}" for i in made)]}
    before["/v1/projects/p"] = first.get("/v1/projects/p").data
    second = Client(replay.persist(create_app(), tmp_path / "volume", fsync="always"))  # a restart, in-process
    assert {path: second.get(path).data for path in before} == before
    lines = (tmp_path / "volume" / "recorded_api_calls.json").read_bytes().splitlines()
    assert [orjson.loads(line)["service"] for line in lines] == ["orders"] * 4 + ["projects"]


def _shape(answer: requests.Response) -> tuple[int, str, object]:
    """What must be the same behind replay as without it: status, content type, and the JSON's keys."""
    body: object = answer.text
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        document = answer.json()
        items = document if isinstance(document, list) else [document]
        body = [sorted(item) for item in items]
    return answer.status_code, answer.headers.get("Content-Type", ""), body


@pytest.mark.transparency
def test_replay_serve_answers_as_the_plain_app_and_verify_agrees(servers: Servers, tmp_path: Path) -> None:
    """The transparency check for a non-moto emulator: the same calls, the same kinds of answers."""
    from flask_emulator import create_app
    from werkzeug.serving import make_server

    plain = make_server("127.0.0.1", 0, create_app(testing=True, project="acme"), threaded=True)
    thread = threading.Thread(target=plain.serve_forever, daemon=True)
    thread.start()
    data = tmp_path / "volume"
    behind = start(servers, data)
    try:
        shapes = []
        for base in (f"http://127.0.0.1:{plain.server_port}", behind.endpoint):
            made = requests.post(f"{base}/v1/orders", json={"item": "x"}, timeout=10)
            order_id = made.json()["id"]
            calls = [
                made,
                requests.get(f"{base}/v1/orders/{order_id}", timeout=10),
                requests.patch(f"{base}/v1/orders/{order_id}", params={"ifGenerationMatch": "1"}, json={}, timeout=10),
                requests.get(f"{base}/v1/orders/nope", timeout=10),
                requests.delete(f"{base}/v1/orders/{order_id}", timeout=10),
                requests.get(f"{base}/v1/orders", timeout=10),
            ]
            shapes.append([_shape(call) for call in calls])
        assert shapes[0] == shapes[1]
        assert [status for status, _, _ in shapes[1]] == [201, 200, 412, 404, 204, 200]
    finally:
        plain.shutdown()
    behind.stop()
    verified = replay_cli("verify", str(data), "--app", FACTORY, "--json", env=ENV)
    assert verified.returncode == 0, verified.stderr
    report = orjson.loads(verified.stdout)
    assert report["failed"] == 0 and report["diverged"] == 0 and report["restored"] == 2, report


def test_the_console_script_finds_the_app_where_it_runs(tmp_path: Path) -> None:
    (tmp_path / "here_app.py").write_text("VALUE = 1\n")
    script = Path(sys.executable).with_name("replay")
    done = subprocess.run(
        [str(script), "serve", "--app", "here_app:VALUE", "--data-dir", str(tmp_path / "volume")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=server_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "not a WSGI application" in done.stderr, done.stderr  # imported: found in cwd
