"""The transparency suite (issue 13 §4): `replay serve` must answer exactly as plain moto does, and keep it all.

Run it::

    .venv/bin/python -m pytest tests/e2e/test_transparency.py                 # a seeded sample (what CI runs)
    REPLAY_TRANSPARENCY=all .venv/bin/python -m pytest tests/e2e/test_transparency.py  # every scenario (~1 min)
    REPLAY_TRANSPARENCY=sqs,s3-multipart .venv/bin/python -m pytest tests/e2e/test_transparency.py
    .venv/bin/python -m pytest -m transparency                                # the same, by marker

``REPLAY_TRANSPARENCY``: unset or ``sample`` runs a fixed sample of 18 (seed :data:`SEED`) with at least one
scenario per service; ``all`` every scenario; otherwise a comma-separated list of scenario names and services.

Every scenario (``tests/e2e/transparency/<service>.py``) runs once against a plain moto server
(``python -m moto.server``) and once behind ``replay serve``; their answers must be the same once what two
independent servers legitimately generate differently is normalised (ids, tokens, timestamps, request ids,
ports: :class:`transparency.core.Normaliser`).  Then the replay server is stopped (SIGTERM) and a new one
serves the same data dir on another port: every scenario's fingerprint (what it created, read back) must be
exactly what it was.  A second replay server records every scenario as well and is killed with SIGKILL: a
new one on its data dir must read back its fingerprints exactly too.  Last, ``replay verify`` replays the
first log into a fresh moto and must report no failure and no divergence, neither overall nor in the log
lines of any one scenario; the restarts' own replays must agree with it.

One plain server and the replay servers serve every scenario (each has its own resource names).  A scenario
that a known replay bug breaks names the bug in its class (``xfail_answers``, ``xfail_restart``,
``xfail_verify``); its tests are then marked ``xfail(strict=True)`` with that reason.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

if str(Path(__file__).parent) not in sys.path:  # the scenario package, whatever pytest's import mode
    sys.path.insert(0, str(Path(__file__).parent))
import transparency
from transparency.core import ClientPool, Context, Scenario, canon, differences, normalise

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = [pytest.mark.e2e, pytest.mark.transparency]

SEED = 20241113
SAMPLE_SIZE = 18  # at least one per service, the rest drawn at random (with SEED)
START_TIMEOUT = 30.0
PHASES = ("answers", "restart", "verify")


def selected() -> list[Scenario]:
    """The scenarios ``REPLAY_TRANSPARENCY`` asks for: a fixed sample covering every service (unset or
    ``sample``, seeded with :data:`SEED`: what CI runs); every one (``all``); or a comma-separated list of
    names and services."""
    scenarios = list(transparency.load().values())
    wanted = os.environ.get("REPLAY_TRANSPARENCY", "").strip().lower()
    if wanted == "all":
        return scenarios
    if wanted in ("", "sample"):
        rng = random.Random(SEED)
        chosen: set[str] = set()
        for service in sorted({s.service for s in scenarios}):
            chosen.add(rng.choice([s.name for s in scenarios if s.service == service]))
        rest = [s.name for s in scenarios if s.name not in chosen]
        chosen.update(rng.sample(rest, max(0, min(len(rest), SAMPLE_SIZE - len(chosen)))))
        return [s for s in scenarios if s.name in chosen]
    names = {name.strip() for name in wanted.split(",")}
    unknown = names - {s.name for s in scenarios} - {s.service for s in scenarios}
    assert not unknown, f"REPLAY_TRANSPARENCY names no scenario or service: {sorted(unknown)}"
    return [s for s in scenarios if s.name in names or s.service in names]


SELECTED = selected()


def known_bug(scenario: Scenario, phase: str) -> str | None:
    """The replay bug that breaks ``scenario`` in ``phase`` (one of :data:`PHASES`), if any."""
    reason: str | None = getattr(scenario, f"xfail_{phase}")
    return reason


def params(phase: str) -> list[Any]:
    """One pytest param per selected scenario, xfail(strict) where the scenario names a bug for ``phase``."""
    marked = []
    for scenario in SELECTED:
        reason = known_bug(scenario, phase)
        marks = [pytest.mark.xfail(strict=True, reason=f"{scenario.name}: {reason}")] if reason else []
        marked.append(pytest.param(scenario, id=scenario.name, marks=marks))
    return marked


def xfail_if_verify_bugs(test: Any) -> Any:
    """Mark the whole-log verify check xfail(strict) when a selected scenario names a bug that fails it."""
    reasons = [f"{s.name}: {known_bug(s, 'verify')}" for s in SELECTED if known_bug(s, "verify")]
    return pytest.mark.xfail(strict=True, reason="; ".join(reasons))(test) if reasons else test


# plain moto


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def plain_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain ``python -m moto.server`` on a free port, for the whole module; its endpoint."""
    workdir = tmp_path_factory.mktemp("plain-moto")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MOTO_", "REPLAY_"))}
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    stderr_path = workdir / "moto.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=workdir,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, f"moto.server exited with {proc.returncode}:\n{stderr_path.read_text()}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{endpoint}/moto-api/data.json", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"moto.server not up within {START_TIMEOUT:g} s"
            time.sleep(0.05)
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# every selected scenario run against plain moto and two replay servers; restarts; verify


@dataclasses.dataclass
class Outcome:
    """What one scenario's run on one server came to: its observations, or the error it raised."""

    context: Context
    observations: Any = None
    error: str | None = None


@dataclasses.dataclass
class Copy:
    """One replay data dir: the server serving it now, each scenario's outcome and log lines there, and the
    fingerprints read before and after its restart.

    ``lines``: the log lines (first, last; 1-based, inclusive) each scenario's run appended.
    """

    data_dir: Path
    server: ReplayServer
    outcomes: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    lines: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    before: dict[str, Any] = dataclasses.field(default_factory=dict)
    after: dict[str, Any] = dataclasses.field(default_factory=dict)
    restarted: ReplayServer | None = None

    def run(self, scenario: Scenario, pool: ClientPool) -> Outcome:
        """Run ``scenario`` against this copy's server, noting the log lines it appended."""
        written = self.lines[next(reversed(self.lines))][1] if self.lines else 0
        outcome = self.outcomes[scenario.name] = attempt(scenario, Context(pool, self.server.endpoint))
        # a call's entry is in the log before its client has the whole answer
        self.lines[scenario.name] = (written + 1, len(self.server.log_lines()))
        return outcome

    def fingerprints(self) -> dict[str, Any]:
        """Every selected scenario's fingerprint read from the running server (a failure as a string)."""
        result: dict[str, Any] = {}
        for scenario in SELECTED:
            ctx = self.outcomes[scenario.name].context.moved(self.server.endpoint)
            try:
                result[scenario.name] = canon(scenario.fingerprint(ctx))
            except Exception:
                result[scenario.name] = f"fingerprint failed: {traceback.format_exc(limit=6)}"
        return result

    def scenario_at(self, line: int) -> str | None:
        """The scenario whose run appended log line ``line``."""
        return next((name for name, (first, last) in self.lines.items() if first <= line <= last), None)


@dataclasses.dataclass
class Recording:
    """The plain moto outcomes, and the two replay copies: ``sigterm`` (its answers are compared with plain
    moto's, it is restarted after SIGTERM and verified) and ``kill`` (restarted after SIGKILL)."""

    plain: dict[str, Outcome]
    copies: dict[str, Copy]


def attempt(scenario: Scenario, ctx: Context) -> Outcome:
    """Run ``scenario``; an exception (a failed step, a timeout) is kept as the outcome, not raised."""
    try:
        return Outcome(ctx, observations=scenario.run(ctx))
    except Exception:
        return Outcome(ctx, error=traceback.format_exc(limit=8))


@pytest.fixture(scope="module")
def recording(
    plain_moto: str,
    module_servers: Servers,
    module_aws: AwsClients,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Recording]:
    """Every selected scenario run against plain moto, then behind two fresh ``replay serve``; fingerprints."""
    pool = ClientPool(module_aws)
    copies = {}
    for how in ("sigterm", "kill"):
        data_dir = tmp_path_factory.mktemp(f"transparency-{how}") / "data"
        copies[how] = Copy(data_dir, module_servers.start(data_dir))
    recording = Recording({}, copies)
    # the three servers are separate processes: each scenario runs on all three at once, one thread each
    with concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="scenario") as threads:
        for scenario in SELECTED:
            plain = threads.submit(attempt, scenario, Context(pool, plain_moto))
            runs = [threads.submit(copy.run, scenario, pool) for copy in copies.values()]
            recording.plain[scenario.name] = plain.result()
            for run in runs:
                run.result()
        for copy, before in zip(copies.values(), threads.map(Copy.fingerprints, copies.values()), strict=True):
            copy.before = before
    yield recording
    pool.close()


@pytest.mark.parametrize("scenario", params("answers"))
def test_replay_serve_answers_as_plain_moto(recording: Recording, scenario: Scenario) -> None:
    """The scenario got the same answers from ``replay serve`` as from plain moto (once normalised)."""
    plain, replayed = recording.plain[scenario.name], recording.copies["sigterm"].outcomes[scenario.name]
    assert plain.error is None, f"{scenario.name} failed against plain moto (the scenario is wrong):\n{plain.error}"
    assert replayed.error is None, f"{scenario.name} failed behind replay serve:\n{replayed.error}"
    expected, got = normalise(plain.observations), normalise(replayed.observations)
    assert expected == got, f"{scenario.name}: plain moto (left) and replay serve (right) answered differently:\n" + (
        "\n".join(differences(expected, got))
    )


def restart(copy: Copy, how: str, module_servers: Servers) -> Copy:
    """Stop the copy's server (``sigterm``, or ``kill``: SIGKILL, no shutdown code at all), serve its data dir
    again on another port, and read every fingerprint there."""
    old = copy.server
    if how == "sigterm":
        old.stop()
    else:
        old.kill()
    copy.server = copy.restarted = module_servers.start(copy.data_dir, avoid_ports=[old.port])
    copy.after = copy.fingerprints()
    return copy


@pytest.fixture(scope="module")
def restarted(recording: Recording, module_servers: Servers) -> Recording:
    """Both copies restarted at once: the first after SIGTERM, the second after SIGKILL."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="restart") as threads:
        done = [threads.submit(restart, copy, how, module_servers) for how, copy in recording.copies.items()]
        for future in done:
            future.result()
    return recording


@pytest.fixture(scope="module")
def after_sigterm(restarted: Recording) -> Copy:
    """The first replay server stopped with SIGTERM and a new one started on its data dir."""
    return restarted.copies["sigterm"]


@pytest.fixture(scope="module")
def after_kill(restarted: Recording) -> Copy:
    """The second replay server killed with SIGKILL and a new one started on its data dir."""
    return restarted.copies["kill"]


def check_fingerprint(copy: Copy, how: str, scenario: Scenario) -> None:
    before, after = copy.before[scenario.name], copy.after[scenario.name]
    assert not (isinstance(before, str) and before.startswith("fingerprint failed")), before
    assert before == after, f"{scenario.name}: state before (left) and after the {how} restart (right) differ:\n" + (
        "\n".join(differences(before, after))
    )


@pytest.mark.parametrize("scenario", params("restart"))
def test_state_survives_a_sigterm_restart(after_sigterm: Copy, scenario: Scenario) -> None:
    """Everything the scenario created reads back exactly the same from a server restarted after SIGTERM."""
    check_fingerprint(after_sigterm, "sigterm", scenario)


@pytest.mark.parametrize("scenario", params("restart"))
def test_state_survives_a_kill_restart(after_kill: Copy, scenario: Scenario) -> None:
    """... and from one restarted after the server that recorded it was killed with SIGKILL."""
    check_fingerprint(after_kill, "kill", scenario)


@dataclasses.dataclass
class Verified:
    """``replay verify --json`` run on a data dir: its exit status, output, and report if it printed one."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    def problems(self) -> dict[int, list[dict[str, Any]]]:
        """The failures and divergences of the report, by log line."""
        assert self.report is not None, f"no JSON report:\n{self.stdout}\nstderr:\n{self.stderr}"
        found: dict[int, list[dict[str, Any]]] = {}
        for kind in ("failures", "divergences"):
            for problem in self.report[kind]:
                found.setdefault(problem["line"], []).append({"kind": kind, **problem})
        return found


@pytest.fixture(scope="module")
def verified(after_sigterm: Copy) -> Verified:
    """``replay verify DATA_DIR --json`` on the first copy's data dir, at rest (its server stopped first)."""
    after_sigterm.server.stop()
    done = subprocess.run(
        [sys.executable, "-m", "replay", "verify", str(after_sigterm.data_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = None
    return Verified(done.returncode, done.stdout, done.stderr, report if isinstance(report, dict) else None)


@xfail_if_verify_bugs
def test_replay_verify_reports_no_failure_and_no_divergence(verified: Verified) -> None:
    """``replay verify DATA_DIR --json``: exactly one JSON document on stdout; nothing failed or diverged."""
    assert verified.report is not None, (
        f"verify printed no single JSON document:\n{verified.stdout}\nstderr:\n{verified.stderr}"
    )
    report = verified.report
    shown = json.dumps({"failures": report["failures"], "divergences": report["divergences"]}, indent=1)
    assert report["total"] > 0 and report["restored"] == report["total"] - report["failed"], report
    assert report["failed"] == 0, f"replay verify: {report['failed']} calls failed:\n{shown}"
    assert report["diverged"] == 0, f"replay verify: {report['diverged']} calls diverged:\n{shown}"
    assert verified.returncode == 0, f"verify exited {verified.returncode}:\n{verified.stderr}"


@pytest.mark.parametrize("scenario", params("verify"))
def test_replay_verify_replays_the_scenario_cleanly(
    verified: Verified, after_sigterm: Copy, scenario: Scenario
) -> None:
    """No call of the scenario failed or diverged when ``replay verify`` replayed the log."""
    first, last = after_sigterm.lines[scenario.name]
    mine = {line: found for line, found in verified.problems().items() if first <= line <= last}
    assert not mine, f"{scenario.name} (log lines {first}-{last}): " + json.dumps(mine, indent=1)


_REPLAY_PROBLEM = re.compile(r":(\d+): (\S+) (failed|diverged) on replay")


def blamed(copy: Copy, problems: list[tuple[int, str]]) -> list[tuple[str | None, str]]:
    """``(scenario, failed|diverged)`` for each ``(log line, kind)``: who a problem belongs to."""
    return sorted(((copy.scenario_at(line), kind) for line, kind in problems), key=repr)


def replay_problems(copy: Copy) -> list[tuple[int, str]]:
    """``(log line, failed|diverged)`` for each problem the restarted server's start-up replay logged."""
    assert copy.restarted is not None
    return sorted((int(line), kind) for line, _, kind in _REPLAY_PROBLEM.findall(copy.restarted.stderr()))


def test_restarts_replay_as_verify_does(after_sigterm: Copy, after_kill: Copy, verified: Verified) -> None:
    """The SIGTERM restart's start-up replay failed and diverged on exactly the log lines verify names, none
    outside a scenario; the SIGKILL restart (of the other data dir) on calls of the same scenarios."""
    expected = sorted(
        (line, "failed" if problem["kind"] == "failures" else "diverged")
        for line, found in verified.problems().items()
        for problem in found
    )
    assert replay_problems(after_sigterm) == expected, (
        f"the SIGTERM restart's replay (left) and verify's (right) differ:\n{after_sigterm.server.stderr()}"
    )
    assert None not in {name for name, _ in blamed(after_sigterm, expected)}, f"outside every scenario: {expected}"
    assert blamed(after_kill, replay_problems(after_kill)) == blamed(after_sigterm, expected), (
        f"the SIGKILL restart's replay blames other scenarios than verify's:\n{after_kill.server.stderr()}"
    )


def test_enough_scenarios_over_enough_services() -> None:
    """The suite's coverage: at least 60 scenarios over at least 10 services; a sample covers every service."""
    scenarios = list(transparency.load().values())
    services = {s.service for s in scenarios}
    assert len(scenarios) >= 60, f"only {len(scenarios)} scenarios"
    assert len(services) >= 10, f"only {len(services)} services: {sorted(services)}"
    if os.environ.get("REPLAY_TRANSPARENCY", "").strip().lower() in ("", "all", "sample"):
        assert {s.service for s in SELECTED} == services, "the selection leaves a service out"
