"""replay: persistence for WSGI cloud emulators.

One line keeps a WSGI app's state across restarts::

    import replay
    app = replay.persist(app, "./volume")

Every successful state-mutating call is appended to
``./volume/recorded_api_calls.json``; on the next start the log is replayed
into the app before ``persist`` returns.
"""

from __future__ import annotations

from .adapters import StateAdapter as StateAdapter
from .backends import Backend as Backend
from .backends import DisabledBackend as DisabledBackend
from .backends import create_backend as create_backend
from .backends.record_replay import CheckpointPolicy as CheckpointPolicy
from .backends.record_replay import RecordReplayBackend as RecordReplayBackend
from .backends.selective import DATA_PLANE_OPERATIONS as DATA_PLANE_OPERATIONS
from .backends.selective import SelectiveAdapter as SelectiveAdapter
from .backends.selective import SelectiveClassifier as SelectiveClassifier
from .compaction import CompactionPlan as CompactionPlan
from .compaction import plan_compaction as plan_compaction
from .config import BackendKind as BackendKind
from .config import Config as Config
from .config import FsyncPolicy as FsyncPolicy
from .errors import ArchiveError as ArchiveError
from .errors import BackgroundSaveError as BackgroundSaveError
from .errors import CheckpointError as CheckpointError
from .errors import ConfigError as ConfigError
from .errors import DataDirInUseError as DataDirInUseError
from .errors import EntryVersionError as EntryVersionError
from .errors import LogCorruptError as LogCorruptError
from .errors import LogError as LogError
from .errors import LogVersionError as LogVersionError
from .errors import LogWriteError as LogWriteError
from .errors import QuiesceTimeoutError as QuiesceTimeoutError
from .errors import ReplayError as ReplayError
from .errors import ReplayStalledError as ReplayStalledError
from .errors import RequestError as RequestError
from .errors import SourceError as SourceError
from .errors import TransportError as TransportError
from .locks import MutationGate as MutationGate
from .record.classify import READ_OPERATIONS as READ_OPERATIONS
from .record.classify import READ_PREFIXES as READ_PREFIXES
from .record.classify import STATE_CHANGING_READS as STATE_CHANGING_READS
from .record.classify import Call as Call
from .record.classify import Classifier as Classifier
from .record.classify import DefaultClassifier as DefaultClassifier
from .record.entry import FORMAT_VERSION as FORMAT_VERSION
from .record.entry import Entry as Entry
from .record.entry import Request as Request
from .record.entry import Response as Response
from .record.entry import decode_entry as decode_entry
from .record.entry import encode_entry as encode_entry
from .record.log import CallLog as CallLog
from .record.longpoll import LongPolls as LongPolls
from .record.middleware import RecordingMiddleware as RecordingMiddleware
from .record.reader import LogReader as LogReader
from .record.reader import Segment as Segment
from .record.redact import redact as redact
from .record.seeding import Seeder as Seeder
from .record.seeding import ThreadSeeder as ThreadSeeder
from .record.seeding import generic_seeder as generic_seeder
from .record.seeding import moto_seeder as moto_seeder
from .restore.diff import Change as Change
from .restore.livemap import LiveIdMapping as LiveIdMapping
from .restore.mapping import IdMapping as IdMapping
from .restore.replayer import Divergence as Divergence
from .restore.replayer import Failure as Failure
from .restore.replayer import Progress as Progress
from .restore.replayer import Replayer as Replayer
from .restore.replayer import ReplayReport as ReplayReport
from .restore.transport import HTTPTransport as HTTPTransport
from .restore.transport import Transport as Transport
from .restore.transport import WSGITransport as WSGITransport
from .scope import PersistenceScope as PersistenceScope
from .scope import ServiceSelection as ServiceSelection
from .serve.persist import persist as persist
from .share.archive import ArchiveManifest as ArchiveManifest
from .share.archive import ImportReport as ImportReport
from .share.archive import import_archive as import_archive
from .share.localstack import ConversionReport as ConversionReport
from .share.localstack import LocalStackReader as LocalStackReader
from .share.localstack import convert as convert_localstack
from .share.sources import Source as Source
from .share.sources import SourceKind as SourceKind
from .share.sources import identify as identify
from .share.transfer import ExportReport as ExportReport
from .share.transfer import export_state as export_state
from .share.transfer import import_state as import_state
from .storage.checkpoint import Manifest as Manifest
from .storage.datadir import DataDirLock as DataDirLock
from .storage.rewrite import RewriteReport as RewriteReport
from .storage.rewrite import compact_logs as compact_logs
from .version import __version__ as __version__

__all__ = [
    "DATA_PLANE_OPERATIONS",
    "FORMAT_VERSION",
    "READ_OPERATIONS",
    "READ_PREFIXES",
    "STATE_CHANGING_READS",
    "ArchiveError",
    "ArchiveManifest",
    "Backend",
    "BackendKind",
    "BackgroundSaveError",
    "Call",
    "CallLog",
    "Change",
    "CheckpointError",
    "CheckpointPolicy",
    "Classifier",
    "CompactionPlan",
    "Config",
    "ConfigError",
    "ConversionReport",
    "DataDirInUseError",
    "DataDirLock",
    "DefaultClassifier",
    "DisabledBackend",
    "Divergence",
    "Entry",
    "EntryVersionError",
    "ExportReport",
    "Failure",
    "FsyncPolicy",
    "HTTPTransport",
    "IdMapping",
    "ImportReport",
    "LiveIdMapping",
    "LocalStackReader",
    "LogCorruptError",
    "LogError",
    "LogReader",
    "LogVersionError",
    "LogWriteError",
    "LongPolls",
    "Manifest",
    "MutationGate",
    "PersistenceScope",
    "Progress",
    "QuiesceTimeoutError",
    "RecordReplayBackend",
    "RecordingMiddleware",
    "ReplayError",
    "ReplayReport",
    "ReplayStalledError",
    "Replayer",
    "Request",
    "RequestError",
    "Response",
    "RewriteReport",
    "Seeder",
    "Segment",
    "SelectiveAdapter",
    "SelectiveClassifier",
    "ServiceSelection",
    "Source",
    "SourceError",
    "SourceKind",
    "StateAdapter",
    "ThreadSeeder",
    "Transport",
    "TransportError",
    "WSGITransport",
    "__version__",
    "compact_logs",
    "convert_localstack",
    "create_backend",
    "decode_entry",
    "encode_entry",
    "export_state",
    "generic_seeder",
    "identify",
    "import_archive",
    "import_state",
    "moto_seeder",
    "persist",
    "plan_compaction",
    "redact",
]
