"""Shared machinery of the benchmark suite: statistics, interleaving, results, machine info.

Every benchmark measures a *ratio* (or a difference) between arms run side by
side in one process: the arms are interleaved round by round, in an order that
rotates so that no arm always runs first, and each round yields one paired
value (e.g. ``time without / time with``).  What is reported is the median of
the paired values and their spread (p25-p75, min-max).  Nothing is asserted:
whether a target is met is a column of the table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from _workload import Workload, moto_reset

from replay.record.entry import Request, Response
from replay.restore.transport import Transport, WSGITransport
from replay.serve.emulators import moto_emulator

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "HEALTH_PATH",
    "REPLAY_LISTENING",
    "BenchmarkError",
    "Result",
    "ServeProcess",
    "Spread",
    "child_env",
    "machine_info",
    "quiet_gc",
    "rotations",
    "send_ok",
]

T = TypeVar("T")


class BenchmarkError(RuntimeError):
    """The harness itself went wrong (a call failed, a log is short): the figures would be meaningless."""


def send_ok(transport: Transport, request: Request) -> Response:
    """Send ``request`` and insist on a 2xx answer."""
    response = transport.send(request)
    if not 200 <= response.status < 300:
        raise BenchmarkError(f"{request.method} {request.target} answered {response.status}: {response.body[:300]!r}")
    return response


def rotations(arms: Sequence[T], rounds: int) -> Iterator[list[T]]:
    """The order of the arms in each round: rotated by one each round (AB, BA, AB ... / ABC, BCA, CAB ...)."""
    count = len(arms)
    for index in range(rounds):
        shift = index % count
        yield list(arms[shift:]) + list(arms[:shift])


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect now, then keep the cyclic collector off for the timed block (as :mod:`timeit` does)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def now_ns() -> int:
    return time.perf_counter_ns()


@dataclasses.dataclass(frozen=True)
class Spread:
    """Median and spread of a sample of paired per-round values."""

    median: float
    p25: float
    p75: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise BenchmarkError("no values to summarise")
        ordered = sorted(values)
        if len(ordered) >= 2:
            p25, _, p75 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            p25 = p75 = ordered[0]
        return cls(statistics.median(ordered), p25, p75, ordered[0], ordered[-1], len(ordered))

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Result:
    """One line of the table: a measured ratio (``unit="x"``) or time (``unit="us"``) against a target."""

    key: str
    title: str
    unit: str
    value: Spread
    target: float | None
    higher_is_better: bool
    details: dict[str, float | int | str] = dataclasses.field(default_factory=dict)

    def _meets(self, value: float) -> bool:
        if self.target is None:
            return True
        return value >= self.target if self.higher_is_better else value <= self.target

    @property
    def meets(self) -> bool | None:
        """Whether the median meets the target (``None`` when there is no target)."""
        return None if self.target is None else self._meets(self.value.median)

    @property
    def within_spread(self) -> bool:
        """The target lies inside the p25-p75 spread: the verdict could flip on a rerun."""
        return self.target is not None and self._meets(self.value.p25) != self._meets(self.value.p75)

    def verdict(self) -> str:
        if self.meets is None:
            return "-"
        word = "yes" if self.meets else "NO"
        return word + ("*" if self.within_spread else "")

    def format_value(self, value: float) -> str:
        if self.unit == "x":
            return f"{value:.3f}x"
        if not self.unit:  # a count
            return f"{value:,.0f}"
        return f"{value:.2f} {self.unit}"

    def format_target(self) -> str:
        if self.target is None:
            return "-"
        return ("≥ " if self.higher_is_better else "≤ ") + self.format_value(self.target)

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "value": self.value.to_dict(),
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "meets": self.meets,
            "within_spread": self.within_spread,
            "details": self.details,
        }


def _filesystem(path: Path) -> str:
    """The type and mount point of the filesystem holding ``path`` (fsync cost depends on it)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best: tuple[str, str] = ("", "unknown")
    for fields in entries:
        if len(fields) < 3:
            continue
        mount, kind = fields[1], fields[2]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best[0]):
            best = (mount, kind)
    return f"{best[1]} ({best[0] or '?'})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(workdir: Path) -> dict[str, str | int | float | None]:
    """What the figures depend on: interpreter, cores, CPU, load, filesystem of the logs."""
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = None
    try:
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:  # pragma: no cover
        load = "unknown"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average": load,
        "log_filesystem": _filesystem(workdir),
    }


def moto_with_workload(per_service: int) -> tuple[WSGIApplication, WSGITransport, Workload]:
    """A freshly reset moto app, a plain transport to it, and the (a) workload with its setup calls sent."""
    app = moto_emulator().app
    plain = WSGITransport(app)
    workload = Workload(per_service=per_service)
    send_ok(plain, moto_reset())
    for request in workload.setup:
        send_ok(plain, request)
    return app, plain, workload


HEALTH_PATH = "/_localstack/health"
REPLAY_LISTENING = re.compile(rb"listening on http://[^\s:]+:(\d+)")
"""The line ``replay serve`` logs once bound; its group is the port."""
# the environment must not choose the servers' configuration (the defaults are measured)
_SCRUBBED_PREFIXES = ("REPLAY_", "SNAPSHOT_", "PERSISTENCE")
_SCRUBBED = ("DATA_DIR", "MOTO_PORT")


def child_env() -> dict[str, str]:
    """This environment without what would configure a ``replay serve`` child (the defaults are measured)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServeProcess:
    """One ``replay serve`` child on a port of its choosing, its stderr in a file; its configuration is the
    defaults (the environment's is scrubbed) plus ``env``."""

    def __init__(
        self, data_dir: Path, backend: str, stderr: Path, timeout: float, env: dict[str, str] | None = None
    ) -> None:
        self.env = env or {}
        self.data_dir = data_dir
        self.backend = backend
        self.stderr_path = stderr
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.health: dict[str, Any] = {}

    def stderr(self, tail: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_bytes()[-tail:].decode(errors="replace")
        return ""

    def fail(self, why: str) -> BenchmarkError:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return BenchmarkError(
            f"replay serve --backend {self.backend} on {self.data_dir}: {why}; stderr:\n{self.stderr()}"
        )

    def start(self) -> float:
        """Spawn the server; the seconds until its health endpoint said it is ready."""
        command = [
            sys.executable,
            "-m",
            "replay",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--backend",
            self.backend,
        ]
        with open(self.stderr_path, "wb") as stderr:
            started = time.perf_counter()
            env = {**child_env(), **self.env}
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
        deadline = started + self.timeout
        port = None
        while port is None:
            found = REPLAY_LISTENING.search(self.stderr_path.read_bytes())
            if found is not None:
                port = int(found.group(1))
                break
            self._check(deadline)
            time.sleep(0.005)
        self.url = f"http://127.0.0.1:{port}"
        with requests.Session() as session:
            while True:
                with contextlib.suppress(requests.RequestException):
                    answer = session.get(self.url + HEALTH_PATH, timeout=self.timeout)
                    if answer.status_code == 200:
                        document = answer.json()
                        if document.get("features", {}).get("persistence") == "initialized":
                            elapsed = time.perf_counter() - started
                            self.health = document
                            return elapsed
                self._check(deadline)
                time.sleep(0.005)

    def _check(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise self.fail(f"exited with status {self.proc.returncode} before it was healthy")
        if time.perf_counter() > deadline:
            raise self.fail(f"not healthy within {self.timeout:g} s")

    def stop(self) -> float:
        """SIGTERM; insists on a clean exit; the seconds it took."""
        assert self.proc is not None
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise self.fail(f"did not stop within {self.timeout:g} s of SIGTERM") from None
        elapsed = time.perf_counter() - started
        stderr = self.stderr()
        if self.proc.returncode != 0 or "stopped; state is on disk" not in stderr or "Traceback" in stderr:
            raise self.fail(f"did not stop cleanly (status {self.proc.returncode})")
        return elapsed
