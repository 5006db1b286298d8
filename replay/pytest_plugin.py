"""The ``replay`` pytest plugin: each test starts from a recorded state, restored into moto, and changes only its copy.

Registered through the ``pytest11`` entry point (``replay = replay.pytest_plugin``): installing
``replay`` is enough.  Until a test asks for one of its fixtures it does nothing: it imports neither
moto nor boto3, starts nothing and writes nothing.

Which state
    ``@pytest.mark.replay_state(path)`` on a test, a class or a module (``pytestmark``), else
    ``--replay-state PATH``, else the ini value ``replay_state``; ``replay_state(None)`` or none of
    them: an empty emulator.  A relative marker path is read from the directory of the test's file, a
    relative option or ini path from the rootdir.  ``path`` is anything :func:`replay.share.sources.identify`
    reads: a call log, a data dir of the ``replay`` backend (with or without checkpoints), one of the
    ``snapshot`` backend, a LocalStack legacy log, or an archive made by ``replay export``, which is
    imported into a session temp dir first (:func:`replay.share.archive.import_archive`: a ``snapshot``
    archive needs ``REPLAY_ARCHIVE_KEY`` or ``--replay-trust``).

Fixtures (each can be overridden)
    =====================  ========  ===================================================================
    ``replay_state_path``  function  the state's resolved path, or ``None``
    ``replay_emulator``    function  :class:`RestoredEmulator`: moto in-process, restored to that state
    ``replay_server``      function  :class:`RestoredServer`: the same, over HTTP (``endpoint_url``)
    ``replay_aws``         function  keyword arguments for ``boto3.client("sqs", **replay_aws)``
    ``replay_session``     session   :class:`ReplaySession`: the emulator, the baselines, the server
    =====================  ========  ===================================================================

How tests are kept apart
    moto's state is process-global, so a session has one moto.  Each distinct state is restored once
    per session (moto reset, the calls replayed or the snapshots loaded), then kept in memory as a
    *baseline*: every service's state pickled by :class:`~replay.adapters.moto.MotoAdapter`.  Before
    each test that uses the fixtures, moto is reset and the baseline of that test's state is loaded
    back (about a millisecond): what a test changed is gone for the next one, and tests switch between
    states without replaying anything again.  A state that cannot be restored (missing, foreign,
    refused, or a replayed call failed) errors each test that asks for it, at setup, with one line
    naming it (each failed call is logged on ``replay.restore.replayer``, shown as the test's captured log).

Limits
    ``moto.mock_aws`` shares the same process-global backends and resets them when it starts and
    stops: inside the block a test sees an empty moto (over ``replay_aws`` too: calls to
    ``endpoint_url`` still reach the plugin's server), and after it the restored state is gone for the
    rest of that test; the next test gets its state back.  moto's seeder (:func:`replay.record.seeding.moto_seeder`)
    is installed in the test process on first use.  Give the option as ``--replay-state=PATH``: pytest
    reads a separate ``PATH`` argument as a rootdir candidate before plugins' options are known.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
    from werkzeug.test import Client

    from .serve.emulators import Emulator
    from .share.sources import Loaded, Source

__all__ = [
    "ACCESS_KEY",
    "MARKER",
    "REGION",
    "SECRET_KEY",
    "ReplaySession",
    "RestoredEmulator",
    "RestoredServer",
    "replay_aws",
    "replay_emulator",
    "replay_server",
    "replay_session",
    "replay_state_path",
    "state_path",
]

logger = logging.getLogger("replay.pytest_plugin")

MARKER = "replay_state"
"""The marker (and the ini value) that names a test's state."""
REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


# --- hooks -------------------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replay", "replay: tests against moto restored from a recorded state")
    group.addoption(
        "--replay-state",
        metavar="PATH",
        default=None,
        help="state every test starts from unless its replay_state marker names another: a call log, a data dir "
        "of either backend, a LocalStack log or a `replay export` archive (relative: to the rootdir; "
        "ini: replay_state; default: an empty emulator)",
    )
    group.addoption(
        "--replay-trust",
        action="store_true",
        default=False,
        help="load pickled snapshots from archives no key vouches for (you made them); "
        "a key is read from REPLAY_ARCHIVE_KEY",
    )
    parser.addini(
        MARKER,
        help="state every test starts from (as --replay-state, which wins; relative: to the rootdir)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path): start the test from this recorded state (call log, data dir, LocalStack log or archive; "
        "relative: to the test file's directory; None: an empty emulator) instead of --replay-state",
    )


# --- which state -------------------------------------------------------------------------------------------------


def _resolve(value: str | os.PathLike[str], base: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else base / path))


def state_path(node: pytest.Item, config: pytest.Config) -> Path | None:
    """The state ``node`` starts from: its closest ``replay_state`` marker, else the option, else the ini value.

    ``None``: an empty emulator.
    """
    marker = node.get_closest_marker(MARKER)
    if marker is not None:
        values = [*marker.args, *marker.kwargs.values()]
        if len(values) != 1 or set(marker.kwargs) - {"path"} or not isinstance(values[0], (str, os.PathLike)):
            if values == [None] and not marker.kwargs.keys() - {"path"}:
                return None
            pytest.fail(
                f"{node.nodeid}: @pytest.mark.{MARKER} takes one path (or None), got {marker.args!r} {marker.kwargs!r}",
                pytrace=False,
            )
        return _resolve(values[0], node.path.parent)
    option = config.getoption("replay_state")
    if option:
        return _resolve(str(option), config.rootpath)
    ini = str(config.getini(MARKER))
    return _resolve(ini, config.rootpath) if ini else None


# --- what tests get ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RestoredEmulator:
    """moto in-process, restored to a test's state.

    :ivar app: the WSGI app (moto's server app).
    :ivar source: what the state was restored from (``None``: an empty emulator); for an archive, the
        archive itself (``loaded.source`` is the data dir it was imported into).
    :ivar loaded: what restoring it put into the emulator, when it was first restored this session.
    :ivar restored: the services whose state was restored.
    """

    app: WSGIApplication
    source: Source | None
    loaded: Loaded | None
    restored: tuple[str, ...]

    def services(self) -> list[str]:
        """The services whose state was restored (moto's backend names: ``sqs``, ``dynamodb`` ...)."""
        return list(self.restored)

    @functools.cached_property
    def client(self) -> Client:
        """A :class:`werkzeug.test.Client` on :attr:`app`; :meth:`headers` tells moto which service a call is for."""
        from werkzeug.test import Client

        return Client(self.app)

    @staticmethod
    def headers(service: str, target: str | None = None, region: str = REGION) -> dict[str, str]:
        """Headers that route an in-process call to ``service`` (moto reads the SigV4 credential scope).

        ``target``: the ``X-Amz-Target`` of a JSON-protocol call (``"AmazonSQS.ListQueues"``).
        """
        headers = {
            "Authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240101/{region}/{service}/aws4_request, "
            "SignedHeaders=host, Signature=0"
        }
        if target is not None:
            headers["X-Amz-Target"] = target
            headers["Content-Type"] = "application/x-amz-json-1.0"
        return headers


@dataclasses.dataclass(frozen=True)
class RestoredServer(RestoredEmulator):
    """The same emulator served over HTTP on ``127.0.0.1`` (one server per session, started when first asked for).

    :ivar endpoint_url: ``http://127.0.0.1:PORT``, for any AWS client.
    """

    endpoint_url: str


@dataclasses.dataclass(frozen=True)
class _Baseline:
    """A restored state, kept in memory: each service's pickled state and the asset files it refers to."""

    source: Source | None
    loaded: Loaded | None
    states: dict[str, bytes]
    assets: Path | None


class ReplaySession:
    """One pytest session's moto, the baselines of the states its tests start from, and its HTTP server.

    :param workdir: where archives are imported and large S3 bodies of baselines are kept.
    :param trust: import ``snapshot`` archives that no key vouches for (``--replay-trust``).
    """

    def __init__(self, workdir: Path, trust: bool = False) -> None:
        self.workdir = workdir
        self.trust = trust
        self._emulator: Emulator | None = None
        self._baselines: dict[Path | None, _Baseline] = {None: _Baseline(None, None, {}, None)}
        self._failures: dict[Path, str] = {}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def emulator(self) -> Emulator:
        """moto's server app, its seeder and state adapter (made on first use)."""
        if self._emulator is None:
            from .serve.emulators import moto_emulator

            self._emulator = moto_emulator()
        return self._emulator

    def restore(self, path: Path | None) -> RestoredEmulator:
        """Reset moto and load the state at ``path`` (``None``: nothing) into it, restoring it first if new.

        Fails the calling test (``pytest.fail``) when the state cannot be restored.
        """
        baseline = self._baseline(path)
        emulator = self.emulator
        started = time.perf_counter()
        self._reset()
        if emulator.adapter is not None:
            for service, state in baseline.states.items():
                emulator.adapter.load(service, state, None if baseline.assets is None else baseline.assets / service)
        logger.debug("%s loaded into moto in %.1f ms", path or "an empty state", (time.perf_counter() - started) * 1000)
        return RestoredEmulator(emulator.app, baseline.source, baseline.loaded, tuple(baseline.states))

    def serve(self, restored: RestoredEmulator) -> RestoredServer:
        """``restored``, with the URL of this session's HTTP server on it (started on first use)."""
        return RestoredServer(restored.app, restored.source, restored.loaded, restored.restored, self.endpoint_url)

    @property
    def endpoint_url(self) -> str:
        """The URL of this session's HTTP server: werkzeug's threaded server on ``127.0.0.1``, a free port."""
        if self._server is None:
            from werkzeug.serving import make_server

            self._server = make_server("127.0.0.1", 0, self.emulator.app, threaded=True, request_handler=_handler())
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="replay-pytest-http", daemon=True
            )
            self._thread.start()
            logger.info("serving moto on http://127.0.0.1:%d", self._server.server_port)
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        """Stop the HTTP server, if it was started."""
        if self._server is not None:
            self._server.shutdown()
            if self._thread is not None:
                self._thread.join()
            self._server.server_close()
            self._server = self._thread = None

    def _reset(self) -> None:
        reset = self.emulator.reset
        assert reset is not None  # moto's emulator has one
        reset()

    def _baseline(self, path: Path | None) -> _Baseline:
        key = None if path is None else path.resolve()
        if key in self._baselines:
            return self._baselines[key]
        assert path is not None and key is not None
        if key in self._failures:
            pytest.fail(self._failures[key], pytrace=False)
        from .errors import ReplayError

        try:
            baseline = self._capture(path, len(self._baselines) + len(self._failures))
        except (ReplayError, OSError, _Refused) as exc:
            failure = _failure(path, str(exc))
        except Exception as exc:
            logger.exception("restoring %s failed", path)
            failure = _failure(path, f"{type(exc).__name__}: {exc}")
        else:
            self._baselines[key] = baseline
            return baseline
        self._failures[key] = failure
        pytest.fail(failure, pytrace=False)

    def _capture(self, path: Path, number: int) -> _Baseline:
        from .config import Config
        from .share.archive import import_archive
        from .share.sources import SourceKind, identify

        started = time.perf_counter()
        source = identify(path)
        data = source
        if source.kind is SourceKind.ARCHIVE:
            key = Config.load({}, os.environ).archive_key
            report = import_archive(path, self.workdir / "archives" / f"{number:03d}", key=key, trust=self.trust)
            data = identify(report.data_dir, SourceKind(report.kind))
        emulator = self.emulator
        self._reset()
        loaded = data.load_into(emulator.app, emulator.seeder, emulator.adapter)
        if loaded.failed:
            raise _Refused(
                f"{path}: {loaded.failed} of {loaded.calls + loaded.failed} replayed calls failed "
                "(each is logged on replay.replayer)"
            )
        adapter = emulator.adapter
        assert adapter is not None  # moto's emulator has one
        assets = self.workdir / "baselines" / f"{number:03d}"
        states = {service: adapter.dump(service, assets / service) for service in adapter.active()}
        logger.info(
            "restored %s; baseline of %s (%d bytes) kept in %.2f s",
            loaded.describe(),
            ", ".join(states) or "no services",
            sum(map(len, states.values())),
            time.perf_counter() - started,
        )
        return _Baseline(source, loaded, states, assets)


class _Refused(Exception):
    """A state was restored, but not faithfully (replayed calls failed)."""


def _failure(path: Path, detail: str) -> str:
    """One line: what could not be restored, and why (naming ``path`` once)."""
    detail = " ".join(detail.split())
    return (
        f"replay: cannot restore the state: {detail}"
        if str(path) in detail
        else f"replay: cannot restore {path}: {detail}"
    )


@functools.cache
def _handler() -> type[WSGIRequestHandler]:
    """moto's request handler (it keeps headers with underscores), logging requests at DEBUG here."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class Handler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            logger.debug("%s %s", self.requestline, code)

    return Handler


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def replay_session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplaySession]:
    """The session's :class:`ReplaySession` (moto is made on first use; its server is stopped at the end)."""
    session = ReplaySession(tmp_path_factory.mktemp("replay"), trust=bool(request.config.getoption("replay_trust")))
    yield session
    session.close()


@pytest.fixture
def replay_state_path(request: pytest.FixtureRequest) -> Path | None:
    """The state this test starts from: its ``replay_state`` marker, ``--replay-state``, the ini value, or ``None``."""
    node = request.node
    assert isinstance(node, pytest.Item)
    return state_path(node, request.config)


@pytest.fixture
def replay_emulator(replay_session: ReplaySession, replay_state_path: Path | None) -> RestoredEmulator:
    """moto in-process, reset and restored to this test's state."""
    return replay_session.restore(replay_state_path)


@pytest.fixture
def replay_server(replay_session: ReplaySession, replay_emulator: RestoredEmulator) -> RestoredServer:
    """The emulator of :func:`replay_emulator`, served over HTTP (``.endpoint_url``)."""
    return replay_session.serve(replay_emulator)


@pytest.fixture
def replay_aws(replay_server: RestoredServer) -> dict[str, str]:
    """Keyword arguments for boto3: ``boto3.client("sqs", **replay_aws)`` talks to :func:`replay_server`."""
    return {
        "endpoint_url": replay_server.endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
    }
