"""(i) Restart with a large state: start-to-healthy of a real ``replay serve`` vs an empty start.

The state (about 60 MB with the defaults): a DynamoDB table of ``items`` items of
about 1 kB and an S3 bucket of ``objects`` objects of 256 kB, sent over HTTP to a
first server of each backend, once per run:

* ``--backend replay``: recorded, then folded into a checkpoint by a clean stop
  (SIGTERM) of that server;
* ``--backend snapshot`` (default strategies: the load is on a service's first
  request): saved by ``POST /_localstack/state/save``, then SIGTERM.

Each round copies each data dir (``shutil.copytree``: a start may change it) and
starts ``python -m replay serve --port 0`` on it, timing from the spawn until
``GET /_localstack/health`` answers 200 with persistence ``initialized``; the same
with an empty data dir, interleaved (target: big / empty <= 1.3x).  With the big
state, the first request to the big service, a DynamoDB ``GetItem`` of a known
item, is timed too, and its answer checked (and one S3 object read back, untimed):
a wrong answer stops the benchmark.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import requests
from _harness import BenchmarkError, Result, ServeProcess, Spread, rotations, send_ok
from _workload import (
    BIG_BUCKET,
    big_get_item,
    big_item_matches,
    big_object_body,
    big_state,
    s3_request,
)

from replay.restore.transport import HTTPTransport
from replay.storage.checkpoint import read_manifest

__all__ = ["Settings", "run"]

RATIO_TARGET = 1.3


@dataclasses.dataclass(frozen=True)
class Settings:
    items: int = 8_000
    objects: int = 160
    rounds: int = 5
    timeout: float = 120.0


BACKENDS = ("replay", "snapshot")


def _disk_bytes(directory: Path) -> int:
    """Bytes of the files under ``directory``, each hard-linked file counted once."""
    seen: dict[tuple[int, int], int] = {}
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            seen[(info.st_dev, info.st_ino)] = info.st_size
    return sum(seen.values())


def _build(backend: str, data_dir: Path, workdir: Path, settings: Settings, say: Callable[[str], None]) -> None:
    """The big state in ``data_dir``, sent over HTTP to a first server of ``backend``, then saved and stopped."""
    server = ServeProcess(data_dir, backend, workdir / f"restart-build-{backend}.stderr", settings.timeout)
    server.start()
    say(f"  (i) {backend}: sending the state ({settings.items:,} items, {settings.objects} objects) ...")
    transport = HTTPTransport(server.url, timeout=settings.timeout)
    try:
        for request in big_state(settings.items, settings.objects):
            send_ok(transport, request)
        if backend == "snapshot":
            answer = requests.post(server.url + "/_localstack/state/save", timeout=settings.timeout)
            lines = [orjson.loads(line) for line in answer.content.splitlines() if line.strip()]
            saved = {line.get("service") for line in lines if line.get("status") == "ok"}
            if answer.status_code != 200 or any(line.get("status") != "ok" for line in lines):
                raise server.fail(f"POST /_localstack/state/save answered {answer.status_code}: {lines}")
            if not {"dynamodb", "s3"} <= saved:
                raise server.fail(f"POST /_localstack/state/save did not save dynamodb and s3: {lines}")
    finally:
        transport.close()
    server.stop()  # replay: the calls since the last checkpoint are folded into a last one on the way out
    if backend == "replay":
        manifest = read_manifest(data_dir)
        if manifest is None or not {"dynamodb", "s3"} <= set(manifest.services):
            raise BenchmarkError(f"{data_dir}: no checkpoint of dynamodb and s3 after a clean stop: {manifest}")


def _check_state(url: str, settings: Settings, timeout: float) -> tuple[float, float]:
    """The first GetItem's seconds (checked), then a second one's; one S3 object read back and compared."""
    number = settings.items // 2
    transport = HTTPTransport(url, timeout=timeout)
    try:
        took = []
        for _ in range(2):
            started = time.perf_counter()
            answer = transport.send(big_get_item(number))
            took.append(time.perf_counter() - started)
            if answer.status != 200 or not big_item_matches(answer.body, number):
                raise BenchmarkError(
                    f"{url}: GetItem of item {number} after the restart answered {answer.status}: {answer.body[:300]!r}"
                )
        if settings.objects:
            key = settings.objects // 2
            answer = transport.send(s3_request("GET", f"/{BIG_BUCKET}/objects/{key:05d}.bin"))
            if answer.status != 200 or answer.body != big_object_body(key):
                raise BenchmarkError(
                    f"{url}: object {key} after the restart answered {answer.status}, {len(answer.body)} bytes"
                )
    finally:
        transport.close()
    return took[0], took[1]


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    sources: dict[str, Path] = {}
    for backend in BACKENDS:
        sources[f"{backend}, big"] = workdir / f"restart-{backend}-big"
        sources[f"{backend}, empty"] = workdir / f"restart-{backend}-empty"
        sources[f"{backend}, empty"].mkdir(parents=True)
        _build(backend, sources[f"{backend}, big"], workdir, settings, say)
    sizes = {backend: _disk_bytes(sources[f"{backend}, big"]) for backend in BACKENDS}

    arms = [f"{backend}, {size}" for backend in BACKENDS for size in ("big", "empty")]
    starts: dict[str, list[float]] = {arm: [] for arm in arms}
    stops: dict[str, list[float]] = {arm: [] for arm in arms}
    first: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    second: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    health: dict[str, dict[str, Any]] = {}
    for number, order in enumerate(rotations(arms, settings.rounds), 1):
        for arm in order:
            backend, _, size = arm.partition(", ")
            data_dir = workdir / "restart-run" / arm.replace(", ", "-")
            shutil.rmtree(data_dir.parent, ignore_errors=True)
            shutil.copytree(sources[arm], data_dir)
            server = ServeProcess(data_dir, backend, workdir / "restart-run.stderr", settings.timeout)
            starts[arm].append(server.start())
            if size == "big":
                health[backend] = server.health
                try:
                    got, again = _check_state(server.url, settings, settings.timeout)
                except BenchmarkError:
                    server.stop()
                    raise
                first[backend].append(got)
                second[backend].append(again)
            stops[arm].append(server.stop())
            shutil.rmtree(data_dir.parent, ignore_errors=True)
        say(f"  (i) round {number}/{settings.rounds}: " + ", ".join(f"{arm} {starts[arm][-1]:.2f} s" for arm in arms))

    results: list[Result] = []
    for backend in BACKENDS:
        big, empty = starts[f"{backend}, big"], starts[f"{backend}, empty"]
        persistence = health[backend].get("persistence", {})
        details: dict[str, float | int | str] = {
            "start_s_big": round(statistics.median(big), 3),
            "start_s_empty": round(statistics.median(empty), 3),
            "stop_s_big": round(statistics.median(stops[f"{backend}, big"]), 3),
            "data_dir_mb": round(sizes[backend] / 1e6, 1),
        }
        if backend == "replay":
            loaded = persistence.get("loaded") or {}
            details["loaded_from"] = str(loaded.get("from", "nothing"))
            details["load_ms"] = round(float(loaded.get("seconds", 0.0)) * 1000, 1)
            details["calls_replayed"] = int(persistence.get("restored", -1))
        else:
            details["load_strategy"] = str(persistence.get("load_strategy", "?"))
        results.append(
            Result(
                f"i-{backend}-start",
                f"(i) replay serve --backend {backend}: start to healthy, ~{sizes[backend] / 1e6:.0f} MB data dir "
                "/ empty",
                "x",
                Spread.of([one / other for one, other in zip(big, empty, strict=True)]),
                RATIO_TARGET,
                False,
                details,
            )
        )
        results.append(
            Result(
                f"i-{backend}-first-get",
                f"(i) --backend {backend}: first DynamoDB GetItem after the start (answer checked), ms",
                "ms",
                Spread.of([seconds * 1000 for seconds in first[backend]]),
                None,
                False,
                {"second_get_ms": round(statistics.median(second[backend]) * 1000, 2)},
            )
        )
    return results
