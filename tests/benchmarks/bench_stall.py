"""(h) Stall during saves: another service's latency while a large state is saved back to back.

The state (about 60 MB with the defaults): a DynamoDB table of ``items`` items of
about 1 kB (``BatchWriteItem``) and an S3 bucket of ``objects`` objects of 256 kB,
built in-process through the wrapped app, so the backend sees it as loaded and
changed.  For each backend:

* *snapshot*: ``SnapshotBackend(save=MANUAL)``; the saver thread calls
  ``save_services(["dynamodb", "s3"])`` (one image of both, as a scheduled save takes) back to back;
* *replay*: ``RecordReplayBackend`` with automatic checkpoints off; the saver
  thread calls ``checkpoint()`` back to back (every active service is captured
  while state-changing calls wait at the gate, then written).

On the main thread, SQS ``SendMessage`` (a state-changing call, recorded by the
replay backend; the queue is purged, untimed, every ``purge_every`` calls so its
cost stays fixed) is timed call by call for ``seconds``, with no save running
(*idle*) and with the saver thread running (*busy*); the two arms are
interleaved round by round.  Reported per round: busy / idle of the medians
(target <= 1.5x) and of the p99s (target <= 3x).

Then the same as a client sees it (``served``): SQS ``SendMessage`` over HTTP to a real
``replay serve --backend snapshot`` (``SNAPSHOT_SAVE_STRATEGY=MANUAL``) holding the same
state, sent over HTTP, while another client has it save everything back to back
(``POST /_localstack/state/save``: one image of every service, SQS included).

Also, per backend, how long a save held the captured service
(``CheckpointResult.pause``; ``SnapshotBackend.last_saves[...]["held"]``: the fork),
in ms per 100 MB of state (the snapshot or checkpoint state files
plus asset files on disk); and for the snapshot backend the save cost: one
``save_services(["dynamodb", "s3"])`` vs plain ``pickle.dumps`` of
the same moto backends written to a file with fsync (target <= 1.3x).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import requests
from _harness import BenchmarkError, Result, ServeProcess, Spread, now_ns, quiet_gc, rotations, send_ok
from _workload import BIG_QUEUE_URL, big_state, json_request, moto_reset

from replay.backends.record_replay import CheckpointPolicy, RecordReplayBackend
from replay.backends.snapshot import SnapshotBackend
from replay.config import LOG_FILE_NAME, SaveStrategy
from replay.restore.transport import HTTPTransport, Transport, WSGITransport
from replay.serve.emulators import Emulator, moto_emulator
from replay.storage.checkpoint import Checkpoint, read_manifest

__all__ = ["Settings", "run"]

MEDIAN_TARGET = 1.5
P99_TARGET = 3.0
SAVE_TARGET = 1.3
SERVICES = ("dynamodb", "s3")
HUNDRED_MB = 100 * 1024 * 1024
SERVED_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class Settings:
    items: int = 8_000
    objects: int = 160
    rounds: int = 6
    seconds: float = 2.0
    save_rounds: int = 5
    purge_every: int = 50
    served: bool = True


def p99(values: Sequence[float]) -> float:
    """The nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]


def _bytes_under(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file()) if directory.exists() else 0


class _Saver:
    """A thread that runs ``save`` back to back until stopped; what each one held and how long it took."""

    def __init__(self, save: Callable[[], float | None]) -> None:
        self.save = save
        self.held: list[float | None] = []
        self.took: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-saver", daemon=True)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                held = self.save()
                self.took.append(time.perf_counter() - started)
                self.held.append(held)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise BenchmarkError(f"a save failed while the latency was measured: {self.error!r}") from self.error


def _latencies(transport: Transport, seconds: float, purge_every: int) -> list[float]:
    """SendMessage latencies in us for ``seconds``; the queue purged (untimed) every ``purge_every`` calls."""
    send = json_request(
        "sqs", "AmazonSQS.SendMessage", {"QueueUrl": BIG_QUEUE_URL, "MessageBody": "m" * 200}, query_mode=True
    )
    purge = json_request("sqs", "AmazonSQS.PurgeQueue", {"QueueUrl": BIG_QUEUE_URL}, query_mode=True)
    values: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(values) < 100:
        started = time.perf_counter()
        send_ok(transport, send)
        values.append((time.perf_counter() - started) * 1e6)
        if len(values) % purge_every == 0:
            send_ok(transport, purge)
    send_ok(transport, purge)
    return values


@dataclasses.dataclass
class _Stall:
    median_ratios: list[float] = dataclasses.field(default_factory=list)
    p99_ratios: list[float] = dataclasses.field(default_factory=list)
    idle: list[float] = dataclasses.field(default_factory=list)
    busy: list[float] = dataclasses.field(default_factory=list)
    held: list[float | None] = dataclasses.field(default_factory=list)
    took: list[float] = dataclasses.field(default_factory=list)


def _measure(
    name: str, transport: Transport, save: Callable[[], float | None], settings: Settings, say: Callable[[str], None]
) -> _Stall:
    stall = _Stall()
    for number, order in enumerate(rotations(["idle", "busy"], settings.rounds), 1):
        samples: dict[str, list[float]] = {}
        saves = 0
        for arm in order:
            if arm == "idle":
                samples[arm] = _latencies(transport, settings.seconds, settings.purge_every)
                continue
            saver = _Saver(save)
            saver.start()
            try:
                samples[arm] = _latencies(transport, settings.seconds, settings.purge_every)
            finally:
                saver.stop()
            stall.held += saver.held
            stall.took += saver.took
            saves = len(saver.took)
        idle, busy = samples["idle"], samples["busy"]
        stall.median_ratios.append(statistics.median(busy) / statistics.median(idle))
        stall.p99_ratios.append(p99(busy) / p99(idle))
        stall.idle += idle
        stall.busy += busy
        say(
            f"  (h) {name} round {number}/{settings.rounds}: median {stall.median_ratios[-1]:.2f}x, "
            f"p99 {stall.p99_ratios[-1]:.2f}x ({len(busy)} calls, {saves} saves meanwhile)"
        )
    if not stall.took:
        raise BenchmarkError(f"(h) {name}: no save finished while the latency was measured")
    return stall


def _rss_mb() -> float:
    """This process's resident size (what ``fork`` copies the page tables of), in MB."""
    try:
        return round(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def _build(emulator: Emulator, transport: Transport, settings: Settings) -> None:
    send_ok(WSGITransport(emulator.app), moto_reset())
    for request in big_state(settings.items, settings.objects):
        send_ok(transport, request)


def _stall_results(
    backend: str, stall: _Stall, state_bytes: int, extra: dict[str, float | int | str], label: str | None = None
) -> list[Result]:
    label = label or backend
    saves = len(stall.took)
    held = [value for value in stall.held if value is not None]
    common: dict[str, float | int | str] = {
        "per_call_us_idle": round(statistics.median(stall.idle), 1),
        "per_call_us_busy": round(statistics.median(stall.busy), 1),
        "state_mb": round(state_bytes / 1e6, 1),
        "saves_during_busy_arms": saves,
        "save_s": round(statistics.median(stall.took), 3),
        **extra,
    }
    if len(held) != saves:
        common["held_per_save"] = "n/a (save_service returned None)"
    results = [
        Result(
            f"h-{backend}-median",
            f"(h) {label}: SQS SendMessage latency during saves / idle, median",
            "x",
            Spread.of(stall.median_ratios),
            MEDIAN_TARGET,
            False,
            common,
        ),
        Result(
            f"h-{backend}-p99",
            f"(h) {label}: SQS SendMessage latency during saves / idle, p99",
            "x",
            Spread.of(stall.p99_ratios),
            P99_TARGET,
            False,
            {"p99_us_idle": round(p99(stall.idle), 1), "p99_us_busy": round(p99(stall.busy), 1)},
        ),
    ]
    if held and len(held) == saves and state_bytes > 0:
        results.append(
            Result(
                f"h-{backend}-held",
                f"(h) {backend}: captured service held per save, ms per 100 MB of state",
                "ms",
                Spread.of([seconds * 1000 * HUNDRED_MB / state_bytes for seconds in held]),
                None,
                False,
                {"held_ms": round(statistics.median(held) * 1000, 2), "saves": len(held)},
            )
        )
    return results


def _snapshot(emulator: Emulator, workdir: Path, settings: Settings, say: Callable[[str], None]) -> list[Result]:
    assert emulator.adapter is not None
    data = workdir / "stall-snapshot"
    backend = SnapshotBackend(emulator.adapter, data, save=SaveStrategy.MANUAL)
    backend.restore()
    transport = WSGITransport(backend.wrap(emulator.app))
    say(f"  (h) snapshot: building the state ({settings.items:,} items, {settings.objects} objects) ...")
    _build(emulator, transport, settings)
    missing = [service for service in SERVICES if service not in backend.dirty]
    if missing:
        raise BenchmarkError(f"(h) snapshot: {', '.join(missing)} not marked changed by the calls that built it")

    def save() -> float | None:
        """DynamoDB and S3 from one image, as a scheduled save of both does; the seconds they were held."""
        failed = backend.save_services(list(SERVICES))
        if failed:
            raise BenchmarkError(f"(h) snapshot: the save failed: {failed}")
        return float(backend.last_saves[SERVICES[0]]["held"])  # type: ignore[arg-type]

    save()  # warm-up, and the files whose size is the state's
    state_bytes = sum(
        backend.path(service).stat().st_size + _bytes_under(backend.assets(service)) for service in SERVICES
    )
    rss = _rss_mb()
    stall = _measure("snapshot", transport, save, settings, say)

    # the save cost: ours vs plain pickle.dumps of the same backends + write + fsync
    from moto.backends import get_backend

    plain_file = workdir / "stall-plain.pickle"
    moto_backends: list[tuple[str, Any]] = [("dynamodb", get_backend("dynamodb")), ("s3", get_backend("s3"))]

    def save_ours() -> int:
        with quiet_gc():
            started = now_ns()
            save()
            return now_ns() - started

    def save_plain() -> int:
        with quiet_gc():
            started = now_ns()
            for service, moto_backend in moto_backends:
                backends = {account: dict(regions) for account, regions in dict.items(moto_backend)}
                with open(plain_file.with_suffix(f".{service}"), "wb") as file:
                    file.write(pickle.dumps(backends, protocol=pickle.HIGHEST_PROTOCOL))
                    file.flush()
                    os.fsync(file.fileno())
            return now_ns() - started

    save_plain()  # warm-up
    times: dict[str, list[int]] = {"ours": [], "plain": []}
    for number, order in enumerate(rotations(["ours", "plain"], settings.save_rounds), 1):
        for arm in order:
            times[arm].append(save_ours() if arm == "ours" else save_plain())
        say(f"  (h) snapshot save cost round {number}/{settings.save_rounds}")
    plain_bytes = sum(plain_file.with_suffix(f".{service}").stat().st_size for service in SERVICES)
    backend.close()
    results = _stall_results("snapshot", stall, state_bytes, {"rss_mb": rss})
    results.append(
        Result(
            "h-snapshot-save",
            f"(h) snapshot save of DynamoDB + S3 (~{state_bytes / 1e6:.0f} MB) / plain pickle.dumps + write + fsync",
            "x",
            Spread.of([ours / plain for ours, plain in zip(times["ours"], times["plain"], strict=True)]),
            SAVE_TARGET,
            False,
            {
                "per_call_us_ours": round(statistics.median(times["ours"]) / 1000, 1),
                "per_call_us_plain": round(statistics.median(times["plain"]) / 1000, 1),
                "ours_ms": round(statistics.median(times["ours"]) / 1e6, 1),
                "plain_ms": round(statistics.median(times["plain"]) / 1e6, 1),
                "plain_mb": round(plain_bytes / 1e6, 1),
            },
        )
    )
    return results


def _replay(emulator: Emulator, workdir: Path, settings: Settings, say: Callable[[str], None]) -> list[Result]:
    data = workdir / "stall-replay"
    backend = RecordReplayBackend(
        emulator.app,
        data / LOG_FILE_NAME,
        adapter=emulator.adapter,
        seeder=emulator.seeder,
        policy=CheckpointPolicy(percentage=0),
    )
    send_ok(WSGITransport(emulator.app), moto_reset())
    backend.restore()
    transport = WSGITransport(backend.wrap(emulator.app))
    say(f"  (h) replay: recording the state ({settings.items:,} items, {settings.objects} objects) ...")
    _build(emulator, transport, settings)

    def save() -> float | None:
        return backend.checkpoint().pause

    save()  # warm-up: the first checkpoint writes every asset
    manifest = read_manifest(data)
    if manifest is None:
        raise BenchmarkError("(h) replay: no checkpoint after checkpoint()")
    checkpoint = Checkpoint(data, manifest.checkpoint)
    state_bytes = _bytes_under(checkpoint.directory / "state") + _bytes_under(checkpoint.directory / "assets")
    rss = _rss_mb()
    stall = _measure("replay", transport, save, settings, say)
    backend.close(checkpoint=False)
    return _stall_results("replay", stall, state_bytes, {"checkpoint_state_bytes": manifest.size, "rss_mb": rss})


def _served(workdir: Path, settings: Settings, say: Callable[[str], None]) -> list[Result]:
    """(h) as a client sees it: SQS calls over HTTP to a real ``replay serve --backend snapshot``, while another
    client has it save everything (``POST /_localstack/state/save``: one image of every service) back to back."""
    data = workdir / "stall-served"
    server = ServeProcess(
        data, "snapshot", workdir / "stall-served.stderr", SERVED_TIMEOUT, env={"SNAPSHOT_SAVE_STRATEGY": "MANUAL"}
    )
    server.start()
    say(f"  (h) snapshot over HTTP: sending the state ({settings.items:,} items, {settings.objects} objects) ...")
    transport = HTTPTransport(server.url, timeout=SERVED_TIMEOUT)
    session = requests.Session()

    def save() -> float | None:
        answer = session.post(server.url + "/_localstack/state/save", timeout=SERVED_TIMEOUT)
        lines = [orjson.loads(line) for line in answer.content.splitlines() if line.strip()]
        if answer.status_code != 200 or not lines or any(line.get("status") != "ok" for line in lines):
            raise BenchmarkError(f"POST /_localstack/state/save answered {answer.status_code}: {lines}")
        return None  # the hold is the server's to know

    try:
        for request in big_state(settings.items, settings.objects):
            send_ok(transport, request)
        save()  # the files whose size is the state's
        stall = _measure("snapshot over HTTP", transport, save, settings, say)
    finally:
        transport.close()
        session.close()
        server.stop()
    state_bytes = _bytes_under(data / "state")
    return _stall_results("snapshot-http", stall, state_bytes, {}, label="replay serve --backend snapshot, over HTTP")


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    emulator = moto_emulator()
    results = _snapshot(emulator, workdir, settings, say)
    results += _replay(emulator, workdir, settings, say)
    send_ok(WSGITransport(emulator.app), moto_reset())
    if settings.served:
        results += _served(workdir, settings, say)
    return results
