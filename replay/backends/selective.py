"""Selective persistence, applied: the emulator's classifier and state adapter narrowed to what is kept.

:func:`narrow` (called by :func:`~replay.backends.create_backend`) wraps them as the settings of
:mod:`replay.scope` say:

* :class:`SelectiveClassifier` reports the calls that are not kept as not mutating, so the
  recording middleware never records them and the snapshot backend never marks a service
  dirty for them;
* :class:`SelectiveAdapter` lists, dumps and loads only the selected services (checkpoints and
  the snapshot backend), and under ``infrastructure`` asks for dumps without data-plane
  contents (:meth:`~replay.adapters.StateAdapter.dump` with ``data_plane=False``);
  :data:`DATA_PLANE_OPERATIONS` names the calls that carry data-plane traffic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from ..adapters import StateAdapter
from ..errors import ReplayError
from ..record.classify import Call, Classifier, DefaultClassifier
from ..record.entry import Request
from ..scope import PersistenceScope, ServiceSelection

__all__ = [
    "DATA_PLANE_OPERATIONS",
    "SelectiveAdapter",
    "SelectiveClassifier",
    "is_data_plane",
    "narrow",
]

logger = logging.getLogger("replay.scope")

_CONTROL = frozenset({"control", "moto"})  # replay's and moto's own paths: a recorded reset stays recorded


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

    def reset(self, service: str) -> None:
        self.adapter.reset(service)  # the live emulator is reset whether or not the service is persisted


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
