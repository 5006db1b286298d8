"""Which calls change state: protocol-aware classification of a request.

A :class:`Classifier` turns a :class:`~replay.record.entry.Request` into a
:class:`Call`: the service, the operation, and whether the call mutates state.
:class:`DefaultClassifier` knows the three AWS protocols:

* **JSON** (``X-Amz-Target: AmazonSQS.SendMessage``): the operation is the part
  after the last dot.
* **query** (``Action=CreateTopic`` in a form-encoded body or in the query
  string): the operation is the ``Action`` value; reads sent as ``POST`` are
  still reads.
* **REST** (everything else): ``GET``/``HEAD``/``OPTIONS`` read,
  ``PUT``/``POST``/``DELETE``/``PATCH`` mutate.  S3 operations get their AWS
  names (``PutObject``, ``CreateMultipartUpload`` ...); other REST services are
  named ``"<METHOD> <path>"``.

For JSON and query operations, a name with a read prefix (:data:`READ_PREFIXES`,
e.g. ``List``, ``Describe``, ``Get``, ``Head``) or in :data:`READ_OPERATIONS`
(e.g. ``Query``, ``Scan``, ``Decrypt``) is a read, unless it is one of the
:data:`STATE_CHANGING_READS`, whose names lie (found by running every read
against moto and comparing its state before and after: tests/record/test_classify_read_effects.py).
STS ``AssumeRole`` is a state change too: moto keeps the session that maps the
temporary key to the role's account.  SQS ``ReceiveMessage`` is recorded when it
returned messages (:meth:`DefaultClassifier.recordable`): it issues the receipt
handles later deletes name; an empty one only when it changed state (see
:mod:`replay.record.middleware`).

The service is taken from the SigV4 credential scope (``Authorization`` header,
presigned ``X-Amz-Credential``, or the ``x-amz-credential`` field of an S3
presigned POST form), else from the ``X-Amz-Target`` prefix.
``/_localstack/*`` and ``/moto-api/*`` are control paths and never recorded,
except ``POST /moto-api/reset``, which empties moto, and ``POST /_localstack/state/<service>/reset``,
which empties one service (operation ``ResetState`` of that service): both are replayed in order.

Override it by passing ``extra_reads`` / ``extra_mutations`` operation names
to :class:`DefaultClassifier`, or any callable matching :class:`Classifier`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import unquote_plus

from .entry import Request
from .identifiers import id_shape
from .wsgi import environ_from_request

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("replay.classify")

__all__ = [
    "READ_OPERATIONS",
    "READ_PREFIXES",
    "RESET_OPERATION",
    "STATE_CHANGING_READS",
    "Call",
    "Classifier",
    "DefaultClassifier",
    "path_template",
    "query_param",
    "service_from_path",
    "service_reset",
]

READ_PREFIXES: tuple[str, ...] = (
    "List",
    "Describe",
    "Get",
    "Head",
    "BatchGet",
    "TransactGet",
    "Search",
    "Select",
    "Lookup",
    "Check",
    "Validate",
    "Estimate",
    "Simulate",
    "Preview",
    "Test",
)
"""Operation name prefixes that mark a JSON or query operation as a read."""

READ_OPERATIONS: frozenset[str] = frozenset(
    {
        # DynamoDB
        "Query",
        "Scan",
        # KMS: pure cryptography, no state
        "Encrypt",
        "Decrypt",
        "ReEncrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateRandom",
        "GenerateMac",
        "VerifyMac",
        "Sign",
        "Verify",
        # STS (AssumeRole* change state: the session is kept)
        "GetCallerIdentity",
        "GetSessionToken",
        "DecodeAuthorizationMessage",
        # CloudWatch Logs (StartQuery changes state: the query and its results are kept)
        "FilterLogEvents",
    }
)
"""JSON and query operations that are reads although their names do not say so."""

STATE_CHANGING_READS: frozenset[str] = frozenset(
    {
        "GetId",  # Cognito Identity: makes the identity
        "TestConnection",  # DMS: makes the connection
    }
)
"""Operations named like reads that change state: recorded like any other state change."""

# JSON-protocol target prefixes whose service is not their lower-cased name (unsigned calls only:
# a signed call names its service in the credential scope)
_TARGET_SERVICES: dict[str, str] = {
    "AWSCognitoIdentityService": "cognito-identity",
    "AWSCognitoIdentityProviderService": "cognito-idp",
}

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CONTROL_PREFIXES = ("/_localstack/", "/_replay/", "/moto-api/")
_SERVICE_RESET = re.compile(r"/_localstack/state/([a-z0-9][a-z0-9-]*)/reset/?\Z")
RESET_OPERATION = "ResetState"
"""The operation of ``POST /_localstack/state/<service>/reset``: it empties one service, and is recorded."""


def service_reset(path: str) -> str | None:
    """The service ``/_localstack/state/<service>/reset`` names (LocalStack's name for it); ``None``: another path."""
    found = _SERVICE_RESET.match(path)
    return found.group(1) if found is not None else None


_CONTROL_PATHS = frozenset({"/_localstack", "/_replay", "/moto-api"})

_S3_SUBRESOURCES: dict[str, str] = {
    "tagging": "Tagging",
    "versioning": "Versioning",
    "policy": "Policy",
    "acl": "Acl",
    "cors": "Cors",
    "lifecycle": "LifecycleConfiguration",
    "encryption": "Encryption",
    "notification": "NotificationConfiguration",
    "website": "Website",
    "replication": "Replication",
    "logging": "Logging",
    "publicAccessBlock": "PublicAccessBlock",
    "ownershipControls": "OwnershipControls",
    "accelerate": "AccelerateConfiguration",
    "requestPayment": "RequestPayment",
    "intelligent-tiering": "IntelligentTieringConfiguration",
    "inventory": "InventoryConfiguration",
    "metrics": "MetricsConfiguration",
    "analytics": "AnalyticsConfiguration",
    "location": "Location",
    "policyStatus": "PolicyStatus",
}
_S3_OBJECT_SUBRESOURCES: dict[str, str] = {
    "tagging": "Tagging",
    "acl": "Acl",
    "retention": "Retention",
    "legal-hold": "LegalHold",
    "attributes": "Attributes",
}
_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head", "POST": "Post"}


class Call(NamedTuple):
    """What a request is: ``service`` (e.g. ``sqs``), ``operation``, and whether it mutates."""

    service: str
    operation: str
    mutating: bool


class Classifier(Protocol):
    """Anything that can say what a request is."""

    def __call__(self, request: Request) -> Call: ...


_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _scope_service(auth: str) -> str | None:
    """The service of a SigV4 ``Authorization`` value's credential scope."""
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 5:
            return scope[3].lower()
    return None


def _service(request: Request, target: str | None) -> str:
    auth = request.index.get("authorization")
    if auth:
        service = _scope_service(auth)
        if service is not None:
            return service
    if "X-Amz-Credential=" in request.query:
        for part in request.query.split("&"):
            if part.startswith("X-Amz-Credential="):
                scope = unquote_plus(part.split("=", 1)[1]).split("/")
                if len(scope) >= 5:
                    return scope[3].lower()
    if (auth and auth.startswith("AWS ")) or "AWSAccessKeyId=" in request.query:
        return "s3"  # SigV2 (header or presigned URL): only S3 still accepts it
    if request.method == "POST" and (request.index.get("content-type") or "")[:19].lower() == "multipart/form-data":
        form_service = _form_service(request.head(_HEAD))
        if form_service is not None:
            return form_service
    if target:
        prefix = target.split(".", 1)[0]
        named = _TARGET_SERVICES.get(prefix)
        if named is not None:
            return named
        return prefix.split("_", 1)[0].removeprefix("Amazon").removeprefix("AWS").lower()
    return "unknown"


_HEAD = 1 << 16  # how much of a body held in a file is looked at to classify its call

_FORM_CREDENTIAL = re.compile(rb'name="x-amz-credential"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)', re.IGNORECASE)


def _form_service(body: bytes) -> str | None:
    """The service of a presigned POST form: its ``x-amz-credential`` scope, or ``s3`` for SigV2 fields."""
    found = _FORM_CREDENTIAL.search(body)
    if found is not None:
        scope = found.group(1).decode("latin-1").split("/")
        if len(scope) >= 5:
            return scope[3].lower()
    if b'name="AWSAccessKeyId"' in body or b'name="awsaccesskeyid"' in body.lower()[:65536]:
        return "s3"
    return None


_VERSION_SEGMENT = re.compile(r"v\d+(?:\.\d+)*(?:(?:alpha|beta)\d*)?|\d{4}-\d{2}-\d{2}|api|apis|rest|_?internal", re.I)


def service_from_path(path: str) -> str:
    """The service a request that is no AWS call is counted under: its path's first meaningful segment.

    ``/orders/42`` -> ``orders``; ``/api/v1/users`` -> ``users``; ``/storage/v1/b/photos`` -> ``storage``.
    Segments that only say "API" or a version (``api``, ``v1``, ``v2beta1``, ``2024-01-01``) are skipped; a
    path with no other segment is ``root``.
    """
    for segment in path.split("?", 1)[0].split("/"):
        name = unquote_plus(segment).strip().lower()
        if not name or _VERSION_SEGMENT.fullmatch(name):
            continue
        cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name).strip("-.")[:64]
        return cleaned or "root"
    return "root"


def path_template(path: str) -> str:
    """``path`` with each segment that is a generated id or a number written ``{id}``, so that calls on
    different resources of one kind count as one operation: ``/v1/orders/4f1c...-9a`` -> ``/v1/orders/{id}``."""
    segments = path.split("/")
    for index, segment in enumerate(segments):
        value = unquote_plus(segment)
        if value and (value.isdigit() or id_shape(value) is not None):
            segments[index] = "{id}"
    return "/".join(segments)


def query_param(raw: str, name: str) -> str | None:
    """The (decoded) value of ``name`` in a ``k=v&k=v`` string, or ``None``."""
    key = name + "="
    for part in raw.split("&"):
        if part.startswith(key):
            return unquote_plus(part[len(key) :])
    return None


def _query_keys(query: str) -> list[str]:
    return [part.split("=", 1)[0] for part in query.split("&") if part]


def s3_operation(request: Request) -> str:
    """The AWS name of a path-style S3 REST request (best effort)."""
    method = request.method
    segments = request.path.lstrip("/").split("/", 1)
    bucket = segments[0]
    has_key = len(segments) == 2 and segments[1] != ""
    keys = _query_keys(request.query)
    verb = _VERBS.get(method, method.title())
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{verb}Service"
    if not has_key:
        if method == "POST" and "delete" in keys:
            return "DeleteObjects"
        for key in keys:
            if key == "object-lock":
                return f"{verb}ObjectLockConfiguration"
            if key in _S3_SUBRESOURCES:
                return f"{verb}Bucket{_S3_SUBRESOURCES[key]}"
        if method == "GET":
            if "versions" in keys:
                return "ListObjectVersions"
            if "uploads" in keys:
                return "ListMultipartUploads"
            return "ListObjectsV2" if "list-type" in keys else "ListObjects"
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket", "POST": "PostObject"}.get(
            method, f"{verb}Bucket"
        )
    copy = request.header("x-amz-copy-source") is not None
    if "uploadId" in keys:
        if method == "PUT":
            return "UploadPartCopy" if copy else "UploadPart"
        return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload", "GET": "ListParts"}.get(
            method, f"{verb}Upload"
        )
    if method == "POST":
        if "uploads" in keys:
            return "CreateMultipartUpload"
        if "restore" in keys:
            return "RestoreObject"
        if "select" in keys:
            return "SelectObjectContent"
    for key in keys:
        if key in _S3_OBJECT_SUBRESOURCES:
            return f"{verb}Object{_S3_OBJECT_SUBRESOURCES[key]}"
    if method == "PUT" and copy:
        return "CopyObject"
    return f"{verb}Object"


class DefaultClassifier:
    """Classify AWS requests by protocol (see the module docstring).

    :param extra_reads: operation names to treat as reads.
    :param extra_mutations: operation names to treat as mutations, even when a
        read prefix or :data:`READ_OPERATIONS` says otherwise.
    """

    def __init__(
        self,
        extra_reads: Iterable[str] = (),
        extra_mutations: Iterable[str] = (),
        service_for: Callable[[WSGIEnvironment], str | None] | None = None,
        name_by_path: bool = False,
    ) -> None:
        self.reads = READ_OPERATIONS | frozenset(extra_reads)
        self.mutations = STATE_CHANGING_READS | frozenset(extra_mutations)
        self.service_for = service_for
        self.name_by_path = name_by_path or service_for is not None
        self._calls: dict[tuple[str, str], Call] = {}

    def _service_of(self, request: Request) -> str:
        """The service of a request that is no AWS call: the emulator's ``service_for``, else its path's."""
        if self.service_for is not None:
            try:
                environ = environ_from_request(request)
                try:
                    named = self.service_for(environ)
                finally:
                    environ["wsgi.input"].close()
            except Exception:  # the emulator's hook failed: fall back to the path, never fail the call
                logger.warning("service_for failed for %s %s; naming it by its path", request.method, request.path)
                named = None
            if isinstance(named, str) and named.strip():
                return named.strip()
        return service_from_path(request.path)

    def is_read(self, operation: str) -> bool:
        if operation in self.mutations:
            return False
        return operation in self.reads or operation.startswith(READ_PREFIXES)

    def _named(self, service: str, operation: str) -> Call:
        """The :class:`Call` of a JSON or query operation (memoised: the same few recur)."""
        key = (service, operation)
        call = self._calls.get(key)
        if call is None:
            call = Call(service, operation, not self.is_read(operation))
            if len(self._calls) >= _CACHE_SIZE:
                self._calls.clear()
            self._calls[key] = call
        return call

    def recordable(self, call: Call, status: int, body: bytes) -> bool:
        """Whether a successful mutating call changed anything worth keeping.

        An SQS ``ReceiveMessage`` that returned no message changed nothing (a
        long poll that timed out); one that did is recorded, because it made
        the receipt handles a later ``DeleteMessage`` names.
        """
        if call.operation == "ReceiveMessage" and call.service == "sqs":
            return b'"Messages"' in body or b"<Message>" in body
        return True

    def __call__(self, request: Request) -> Call:
        path = request.path
        if path.startswith(_CONTROL_PREFIXES) or path in _CONTROL_PATHS:
            if request.method == "POST" and path == "/moto-api/reset":
                return Call("moto", "Reset", True)
            if request.method == "POST" and (service := service_reset(path)) is not None:
                return Call(service, RESET_OPERATION, True)  # one service emptied: recorded, replayed
            return Call("control", path, False)

        target = request.index.get("x-amz-target")
        service = _service(request, target)
        if target:
            return self._named(service, target.rsplit(".", 1)[-1])

        action = query_param(request.query, "Action") if "Action=" in request.query else None
        body = request.body if request.file is None else request.head(_HEAD)  # SDKs send Action first
        if action is None and (body[:7] == b"Action=" or b"&Action=" in body):
            content_type = request.header("Content-Type", "") or ""
            if content_type.startswith("application/x-www-form-urlencoded"):
                action = query_param(body.decode("latin-1"), "Action")
        if action:
            return self._named(service, action)

        if service == "unknown" and self.name_by_path:
            service = self._service_of(request)
            operation = f"{request.method} {path_template(path)}"
        else:
            operation = s3_operation(request) if service == "s3" else f"{request.method} {path}"
        mutating = request.method not in _READ_METHODS and operation != "SelectObjectContent"
        if operation in self.mutations:
            mutating = True
        elif operation in self.reads:
            mutating = False
        return Call(service, operation, mutating)
