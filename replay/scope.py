"""Selective persistence: which services are kept, and whether their data-plane traffic is.

Two settings (read into :class:`~replay.config.Config`):

* ``PERSISTENCE_SERVICES`` / ``--services``: a :class:`ServiceSelection`, comma-separated
  service names as the classifier gives them (the SigV4 signing names: ``sqs``, ``s3``,
  ``dynamodb``, ``lambda`` ...), either all included (``sqs,s3``) or all excluded
  (``-dynamodb,-kinesis``).  Unset: every service.
* ``PERSISTENCE_SCOPE`` / ``--scope``: a :class:`PersistenceScope`, ``all`` (default) or
  ``infrastructure``: resources and their configuration are kept, what flows through them
  (:data:`DATA_PLANE_OPERATIONS`: messages, objects, items, records, log events ...) is not.

They are applied by two wrappers that :func:`~replay.backends.create_backend` puts around the
emulator's classifier and state adapter:

* :class:`SelectiveClassifier` reports the calls that are not kept as not mutating, so the
  recording middleware never records them and the snapshot backend never marks a service
  dirty for them;
* :class:`SelectiveAdapter` lists, dumps and loads only the selected services (checkpoints and
  the snapshot backend), and under ``infrastructure`` asks for dumps without data-plane
  contents (:meth:`~replay.adapters.StateAdapter.dump` with ``data_plane=False``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .adapters import StateAdapter
from .errors import ConfigError, ReplayError
from .record.classify import Call, Classifier, DefaultClassifier
from .record.entry import Request

__all__ = [
    "DATA_PLANE_OPERATIONS",
    "PersistenceScope",
    "SelectiveAdapter",
    "SelectiveClassifier",
    "ServiceSelection",
    "is_data_plane",
    "narrow",
]

logger = logging.getLogger("replay.scope")

SERVICES_SETTING = "PERSISTENCE_SERVICES"

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_FORMAT = "comma-separated service names such as sqs,s3,dynamodb, or all of them prefixed with - to exclude them"
_NAMED_AS = "services are named as in the SigV4 signing name, e.g. sqs, s3, dynamodb, lambda"
_CONTROL = frozenset({"control", "moto"})  # replay's and moto's own paths: a recorded reset stays recorded


class PersistenceScope(str, enum.Enum):
    """What of a selected service is kept (``PERSISTENCE_SCOPE``).

    ``ALL`` (default): everything.
    ``INFRASTRUCTURE``: resources and their configuration (queues, buckets, tables, streams,
    log groups ...), not the data-plane traffic through them (messages, objects, items,
    records, log events ...).
    """

    ALL = "all"
    INFRASTRUCTURE = "infrastructure"


@dataclasses.dataclass(frozen=True)
class ServiceSelection:
    """Which services are persisted: every one (no names), the ``names`` only, or all but them.

    :ivar names: the services named (lower-case signing names).
    :ivar excluded: the names are excluded rather than included.
    :ivar source: the setting it was read from (``--services`` or ``PERSISTENCE_SERVICES``), for errors.
    :ivar text: what that setting said, for errors.
    """

    names: frozenset[str] = frozenset()
    excluded: bool = False
    source: str = dataclasses.field(default=SERVICES_SETTING, compare=False)
    text: str = dataclasses.field(default="", compare=False)

    @classmethod
    def parse(cls, source: str, text: str) -> ServiceSelection:
        """``"sqs,s3"``, ``"-dynamodb,-kinesis"``, or ``""`` (every service).

        :raises ConfigError: an empty name, a bad character, or included and excluded names mixed.
        """
        if not text.strip():
            return cls(source=source, text=text)
        entries = [entry.strip().lower() for entry in text.split(",")]
        excluded = {entry.startswith("-") for entry in entries}
        if len(excluded) > 1:
            raise ConfigError(
                source,
                text,
                hint="either every name included (sqs,s3) or every one excluded (-dynamodb,-kinesis), not both",
            )
        names = [entry.removeprefix("-") for entry in entries]
        for name in names:
            if not name:
                raise ConfigError(source, text, hint=f"an empty service name; {_FORMAT}")
            if not _NAME.match(name):
                raise ConfigError(source, text, hint=f"{name!r} is not a service name; {_NAMED_AS}")
        return cls(frozenset(names), excluded.pop(), source, text)

    @property
    def everything(self) -> bool:
        """Every service is persisted."""
        return not self.names

    def includes(self, name: str) -> bool:
        """Whether service ``name`` is persisted."""
        if not self.names:
            return True
        return (name in self.names) is not self.excluded

    def resolved(self, resolve: Callable[[str], str | None]) -> ServiceSelection:
        """The same selection with each name as ``resolve`` names it (a state adapter's ``service_for``)."""
        names = frozenset(resolve(name) or name for name in self.names)
        return dataclasses.replace(self, names=names)

    def check(self, known: Callable[[str], bool], candidates: Iterable[str] = ()) -> None:
        """Refuse names the emulator does not have.

        :param known: whether the emulator has a service of that name.
        :param candidates: names to suggest from when one is unknown.
        :raises ConfigError: a name is unknown; the message suggests close ones.
        """
        unknown = sorted(name for name in self.names if not known(name))
        if not unknown:
            return
        choices = sorted({name for name in candidates if known(name)})
        close = difflib.get_close_matches(unknown[0], choices, n=3)
        suggestion = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(
            self.source,
            self.text or ",".join(sorted(self.names)),
            hint=f"unknown service {unknown[0]!r}{suggestion} ({_NAMED_AS})",
        )

    def describe(self) -> str:
        """For logs: ``every service``, ``sqs, s3 only``, ``every service but dynamodb``."""
        if not self.names:
            return "every service"
        listed = ", ".join(sorted(self.names))
        return f"every service but {listed}" if self.excluded else f"{listed} only"


DATA_PLANE_OPERATIONS: Mapping[str, frozenset[str]] = {
    "sqs": frozenset(
        {
            "SendMessage",
            "SendMessageBatch",
            "ReceiveMessage",
            "DeleteMessage",
            "DeleteMessageBatch",
            "ChangeMessageVisibility",
            "ChangeMessageVisibilityBatch",
            "PurgeQueue",
            "StartMessageMoveTask",
            "CancelMessageMoveTask",
        }
    ),
    "s3": frozenset(
        {
            "PutObject",
            "PostObject",
            "CopyObject",
            "DeleteObject",
            "DeleteObjects",
            "CreateMultipartUpload",
            "UploadPart",
            "UploadPartCopy",
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
            "PutObjectTagging",
            "DeleteObjectTagging",
            "PutObjectAcl",
            "PutObjectRetention",
            "PutObjectLegalHold",
            "RestoreObject",
        }
    ),
    "dynamodb": frozenset(
        {
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchWriteItem",
            "TransactWriteItems",
            "ExecuteStatement",
            "BatchExecuteStatement",
            "ExecuteTransaction",
        }
    ),
    "sns": frozenset({"Publish", "PublishBatch"}),
    "kinesis": frozenset({"PutRecord", "PutRecords"}),
    "firehose": frozenset({"PutRecord", "PutRecordBatch"}),
    "logs": frozenset({"PutLogEvents"}),
    "monitoring": frozenset({"PutMetricData"}),  # CloudWatch
    "events": frozenset({"PutEvents", "PutPartnerEvents"}),  # EventBridge
    "lambda": frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream"}),
    "ses": frozenset({"SendEmail", "SendRawEmail", "SendTemplatedEmail", "SendBulkTemplatedEmail", "SendBulkEmail"}),
    "states": frozenset(  # Step Functions
        {
            "StartExecution",
            "StartSyncExecution",
            "StopExecution",
            "SendTaskSuccess",
            "SendTaskFailure",
            "SendTaskHeartbeat",
        }
    ),
}
"""Per service (signing name), the operations that move data through a resource rather than change it.

REST operations are named as :class:`~replay.record.classify.DefaultClassifier` names them
(``"POST /2015-03-31/functions/f/invocations"``); :func:`is_data_plane` maps those to the
names above.
"""

_REST_OPERATIONS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "lambda": (
        (re.compile(r"POST /[0-9-]+/functions/[^/]+/invocations/?\Z"), "Invoke"),
        (re.compile(r"POST /[0-9-]+/functions/[^/]+/invoke-async/?\Z"), "InvokeAsync"),
        (re.compile(r"POST /[0-9-]+/functions/[^/]+/response-streaming-invocations/?\Z"), "InvokeWithResponseStream"),
    ),
    "ses": ((re.compile(r"POST /v2/email/outbound-(?:bulk-)?emails/?\Z"), "SendEmail"),),  # SES v2
}


def _operation_name(call: Call) -> str:
    operation = call.operation
    if " " not in operation:
        return operation
    for pattern, name in _REST_OPERATIONS.get(call.service, ()):
        if pattern.match(operation):
            return name
    return operation


def is_data_plane(call: Call) -> bool:
    """Whether ``call`` moves data through a resource (:data:`DATA_PLANE_OPERATIONS`)."""
    operations = DATA_PLANE_OPERATIONS.get(call.service)
    return operations is not None and _operation_name(call) in operations


class SelectiveClassifier:
    """``inner``, except that the calls not kept are not mutating (so never recorded or saved for).

    A call is not kept when its service is not selected, or, under
    :attr:`PersistenceScope.INFRASTRUCTURE`, when it is a data-plane call (:func:`is_data_plane`).
    Control calls (``/_localstack/*``, ``/moto-api/*``, a recorded moto reset) are always as
    ``inner`` says.

    :param inner: the classifier to narrow.
    :param selection: the services kept.
    :param scope: what of them is kept.
    :param resolve: the emulator's name for a service (a state adapter's ``service_for``), so that
        ``awslambda`` and ``lambda`` name the same service; ``None``: names as given.
    """

    def __init__(
        self,
        inner: Classifier,
        selection: ServiceSelection,
        scope: PersistenceScope = PersistenceScope.ALL,
        resolve: Callable[[str], str | None] | None = None,
    ) -> None:
        self.inner = inner
        self.resolve = resolve
        self.selection = selection.resolved(resolve) if resolve is not None else selection
        self.scope = scope
        self._inner_recordable: Callable[[Call, int, bytes], bool] | None = getattr(inner, "recordable", None)

    def kept(self, call: Call) -> bool:
        """Whether a mutating ``call`` is persisted."""
        if call.service in _CONTROL:
            return True
        if self.scope is PersistenceScope.INFRASTRUCTURE and is_data_plane(call):
            return False
        service = (self.resolve(call.service) if self.resolve is not None else None) or call.service
        return self.selection.includes(service)

    def recordable(self, call: Call, status: int, body: bytes) -> bool:
        """As ``inner`` says (e.g. an SQS receive that took no message is not worth recording)."""
        return self._inner_recordable(call, status, body) if self._inner_recordable is not None else True

    def __call__(self, request: Request) -> Call:
        call = self.inner(request)
        if call.mutating and not self.kept(call):
            return call._replace(mutating=False)
        return call


class SelectiveAdapter:
    """``adapter`` narrowed to the selected services; under ``infrastructure``, dumps without data-plane contents.

    A service that is not selected is not listed (:meth:`services`, :meth:`active`), has no
    name (:meth:`service_for` is ``None``: requests to it pass the snapshot backend untouched),
    is not saved (:meth:`dump` raises) and is not loaded (:meth:`load` leaves it as it is, so a
    snapshot from before the setting changed is not brought back).
    """

    def __init__(
        self, adapter: StateAdapter, selection: ServiceSelection, scope: PersistenceScope = PersistenceScope.ALL
    ) -> None:
        self.adapter = adapter
        self.given = selection
        self.selection = selection.resolved(adapter.service_for)
        self.scope = scope

    def selected(self, service: str) -> bool:
        """Whether the adapter's service ``service`` is persisted."""
        return self.selection.includes(service)

    def services(self) -> list[str]:
        return [service for service in self.adapter.services() if self.selected(service)]

    def active(self) -> list[str]:
        return [service for service in self.adapter.active() if self.selected(service)]

    def dump(self, service: str, assets: Path | None = None, data_plane: bool = True) -> bytes:
        """``service``'s state; under ``infrastructure`` (or with ``data_plane=False``) without data-plane contents.

        :raises ReplayError: ``service`` is not selected.
        """
        if not self.selected(service):
            raise ReplayError(f"{service} is not persisted ({self.given.source}: {self.given.describe()})")
        keep = data_plane and self.scope is PersistenceScope.ALL
        return self.adapter.dump(service, assets, data_plane=keep)

    def load(self, service: str, data: bytes, assets: Path | None = None) -> None:
        if not self.selected(service):
            logger.info(
                "the saved state of %s is not loaded: %s persists %s",
                service,
                self.given.source,
                self.given.describe(),
            )
            return
        self.adapter.load(service, data, assets)

    def meta(self) -> dict[str, str]:
        return self.adapter.meta()

    def service_for(self, name: str) -> str | None:
        service = self.adapter.service_for(name)
        return service if service is not None and self.selected(service) else None

    def affected(self, service: str) -> frozenset[str]:
        return frozenset(name for name in self.adapter.affected(service) if self.selected(name))

    def watch(self, service: str, operation: str, request: Request) -> Callable[[], bool] | None:
        return self.adapter.watch(service, operation, request)

    def prune_assets(self, assets: Path) -> None:
        self.adapter.prune_assets(assets)

    def defer(self, service: str, load: Callable[[], None]) -> bool:
        return self.adapter.defer(service, load) if self.selected(service) else True  # never loaded: no wait

    def undefer(self, service: str) -> None:
        self.adapter.undefer(service)


def narrow(
    selection: ServiceSelection,
    scope: PersistenceScope,
    classifier: Classifier | None,
    adapter: StateAdapter | None,
) -> tuple[Classifier | None, StateAdapter | None]:
    """``classifier`` and ``adapter`` wrapped so that only what ``selection`` and ``scope`` keep is persisted.

    With a state adapter, every name must be one of its services (``adapter.service_for``);
    without one, every name is accepted.  When everything is kept, both come back unchanged.

    :raises ConfigError: a name is not a service of the emulator.
    """
    if adapter is not None:
        candidates = [*adapter.services(), *DATA_PLANE_OPERATIONS]
        selection.check(lambda name: adapter.service_for(name) is not None, candidates)
    if not selection.names and scope is PersistenceScope.ALL:
        return classifier, adapter
    logger.info(
        "persisting %s%s",
        selection.describe(),
        ", infrastructure only (no messages, objects, items, records or events)"
        if scope is PersistenceScope.INFRASTRUCTURE
        else "",
    )
    resolve = adapter.service_for if adapter is not None else None
    narrowed = SelectiveClassifier(
        classifier if classifier is not None else DefaultClassifier(), selection, scope, resolve
    )
    return narrowed, SelectiveAdapter(adapter, selection, scope) if adapter is not None else None
