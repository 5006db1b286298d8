"""moto's state: per-service backend dicts, pickled with the help moto's objects need.

``moto.backends.get_backend(service)`` is a ``BackendDict``: account id ->
``AccountSpecificBackend`` (region -> backend object).  :class:`MotoAdapter`
pickles the backend objects of every account and region, plus the extra
attributes some backend dicts carry (S3's ``bucket_accounts`` index), with a
pickler that handles what plain ``pickle`` refuses:

* locks and conditions (SQS queues): rebuilt empty, a condition around its
  own lock, so locks shared between objects stay shared;
* ``defaultdict`` whose factory is a lambda (SSM): the lambda is replaced by
  an equivalent picklable factory worked out from what it makes
  (``defaultdict(lambda: defaultdict(dict))`` -> ``partial(defaultdict, dict)``);
* every ``dict`` subclass is saved from its raw storage and rebuilt without
  its ``__init__`` or ``__setitem__``: S3's ``_VersionedKeyStore`` hides all
  but the latest version of each key behind ``items()`` (plain pickling loses
  the older versions), SSM's ``ParameterDict`` wants arguments in ``__init__``;
* ``WeakValueDictionary`` (Lambda): rebuilt from its current items;
* S3 object bodies of :data:`ASSET_THRESHOLD` bytes or more: kept as asset
  files named by their SHA-256 in the directory the caller gives (the snapshot
  backend's ``<data dir>/state/<service>/``), written once, checked against
  their digest when loaded, removed once no snapshot refers to them;
* ``cryptography`` keys (KMS): stored as DER (PKCS#8 / SubjectPublicKeyInfo),
  loaded back as the same key, so ciphertexts and signatures made before a
  restart still decrypt and verify after it.

``dump(service, data_plane=False)`` (``PERSISTENCE_SCOPE=infrastructure``) writes the objects
listed in :data:`DATA_PLANE_ATTRIBUTES` with their data-plane attributes empty: SQS queues
without messages, S3 buckets without objects, versions or multipart uploads, DynamoDB tables
without items or stream records, Kinesis shards without records, log streams without events,
and so on; everything else about them (attributes, policies, tags, indexes, configuration) is
kept.  Only the pickled copy is changed, one attribute dictionary at a time: the live objects
are not touched and nothing is copied beyond the emptied objects' own attribute dictionaries.

:meth:`MotoAdapter.load` puts the state back *in place*: the live
``BackendDict`` and its per-account dicts keep their identity (moto's request
handlers hold references to them), their contents are replaced.  moto's own
reset (``POST /moto-api/reset``) still clears restored state.
"""

from __future__ import annotations

import collections
import copy
import copyreg
import functools
import hashlib
import io
import logging
import pickle
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write
from .moto_effects import watch_receive

if TYPE_CHECKING:
    from ..record.entry import Request

__all__ = ["ASSET_THRESHOLD", "DATA_PLANE_ATTRIBUTES", "NOT_SERVICES", "MotoAdapter", "dumps", "keep_signing_keys"]

logger = logging.getLogger("replay.adapters.moto")

ASSET_THRESHOLD = 64 * 1024
"""S3 object bodies this large or larger are kept as asset files, not inside the pickle."""

_LOCK_TYPES: tuple[type, ...] = (type(threading.Lock()), type(threading.RLock()))
_CONDITION = threading.Condition
_DICT_ATTRIBUTES_SKIPPED = frozenset({"backend", "service_name", "_use_boto3_regions", "_additional_regions", "_id"})
# signing names (as in the SigV4 credential scope) whose moto backend has another name
_SIGNING_NAMES = {
    "lambda": "awslambda",
    "email": "ses",
    "monitoring": "cloudwatch",
    "states": "stepfunctions",
    "execute-api": "apigateway",
    "elasticloadbalancing": "elbv2",
    "es": "opensearch",
}
# services moto changes on behalf of a call to another (deliveries, notifications, targets)
_FAN_OUT: dict[str, tuple[str, ...]] = {
    "sns": ("sqs", "awslambda"),
    "s3": ("sqs", "sns", "awslambda"),
    "events": ("sqs", "sns", "awslambda", "logs"),
    "dynamodb": ("dynamodbstreams",),
    "sts": ("iam",),  # an assumed role's temporary key is kept by IAM too
    "cloudformation": ("*",),  # stacks make resources anywhere
}
# modules moto lists next to its services that hold no backends of their own
NOT_SERVICES = frozenset(
    {"core", "moto_api", "moto_proxy", "moto_server", "utilities", "awslambda_simple", "batch_simple", "s3bucket_path"}
)


def _empty_like(value: Any) -> Any:
    """An empty container of ``value``'s type (a ``defaultdict`` keeps its factory)."""
    if isinstance(value, collections.defaultdict):
        return type(value)(value.default_factory)
    return type(value)()


def _to(constant: Any) -> Callable[[Any], Any]:
    return lambda _value: constant


_S3_KEY_ARN = re.compile(r"arn:[^:]*:s3:::[^/]+/")


def _bucket_tags_only(tagger: Any) -> Any:
    """S3's tagging service without the tags of objects (their ARNs are ``arn:aws:s3:::bucket/key/version``)."""
    bare = copy.copy(tagger)
    bare.tags = {arn: tags for arn, tags in tagger.tags.items() if not _S3_KEY_ARN.match(arn)}
    return bare


DATA_PLANE_ATTRIBUTES: dict[str, dict[str, Callable[[Any], Any]]] = {
    "moto.sqs.models.Queue": {
        "_messages": _empty_like,
        "_pending_messages": _empty_like,  # FIFO groups held by received messages
        "deleted_messages": _empty_like,  # receipt handles of deleted messages
        "last_purged_at": _to(None),
    },
    "moto.s3.models.FakeBucket": {"keys": _empty_like, "multiparts": _empty_like},  # every version of every key
    "moto.s3.models.S3Backend": {"tagger": _bucket_tags_only},
    "moto.dynamodb.models.table.Table": {"items": _empty_like},
    "moto.dynamodb.models.table.StreamShard": {"items": _empty_like},
    "moto.kinesis.models.Shard": {"records": _empty_like},
    "moto.logs.models.LogStream": {
        "events": _empty_like,
        "first_event_timestamp": _to(None),
        "last_event_timestamp": _to(None),
        "last_ingestion_time": _to(None),
        "stored_bytes": _to(0),
    },
    "moto.sns.models.Topic": {"sent_notifications": _empty_like},
    "moto.sns.models.PlatformEndpoint": {"messages": _empty_like},
    "moto.sns.models.SNSBackend": {"sms_messages": _empty_like},
    "moto.ses.models.SESBackend": {"sent_messages": _empty_like, "sent_message_count": _to(0)},
    "moto.cloudwatch.models.CloudWatchBackend": {"metric_data": _empty_like, "paged_metric_data": _empty_like},
    "moto.events.models.Archive": {"events": _empty_like},
    "moto.stepfunctions.models.StateMachineInstance": {"executions": _empty_like},
}
"""Under ``data_plane=False``: per top-level moto class (and its subclasses), the attributes written empty.

Each maps to a function from the live value to what is pickled in its place.  A class that
no longer has one of its attributes (another moto version) fails the dump rather than keep
data silently.
"""


def _rebuild_lock(recursive: bool) -> Any:
    return threading.RLock() if recursive else threading.Lock()


def _new_mapping(kind: type[dict[Any, Any]], factory: Any) -> Any:
    mapping: Any = kind.__new__(kind)
    if factory is not None:
        mapping.default_factory = factory
    return mapping


def _fill_mapping(mapping: Any, state: tuple[dict[str, Any] | None, list[tuple[Any, Any]]]) -> None:
    attributes, items = state
    if attributes:
        mapping.__dict__.update(attributes)
    for key, value in items:
        dict.__setitem__(mapping, key, value)


def _load_private_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    return load_der_private_key(der, password=None)


def _load_public_key(der: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    return load_der_public_key(der)


def _factory_for(sample: Any) -> Callable[[], Any] | None:
    """A picklable factory that makes what ``sample`` (made by an unpicklable factory) is, empty."""
    if isinstance(sample, collections.defaultdict):
        inner = sample.default_factory
        if inner is None or _picklable_callable(inner):
            return functools.partial(collections.defaultdict, inner)
        inner_factory = _factory_for(inner())
        return None if inner_factory is None else functools.partial(collections.defaultdict, inner_factory)
    if type(sample) in (dict, list, set) and not sample:
        return type(sample)
    return None


def _picklable_callable(value: Callable[..., Any]) -> bool:
    qualname = getattr(value, "__qualname__", "")
    return "<lambda>" not in qualname and "<locals>" not in qualname


class _AssetRef:
    """Stands for a large body kept as an asset file; unpickles as the body itself."""

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest


_ASSETS = threading.local()  # .directory: where _load_asset reads, while MotoAdapter.load runs


def _new_object(kind: type[object]) -> Any:
    obj = kind.__new__(kind)
    # moto's FakeKey.__del__ reads `disposed`: if its state never arrives (a refused asset), let it go quietly
    obj.__dict__["disposed"] = True
    return obj


def _load_asset(digest: str) -> bytes:
    directory: Path | None = getattr(_ASSETS, "directory", None)
    if directory is None:
        raise pickle.UnpicklingError("an asset reference outside MotoAdapter.load")
    data = (directory / digest).read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise pickle.UnpicklingError(f"{directory / digest}: the asset does not match its digest")
    return data


class _Pickler(pickle.Pickler):
    """A pickler with the handlers moto's objects need, looked up by type in its ``dispatch_table`` (in C: an
    object of any other type costs nothing more than with plain ``pickle``).  ``kinds`` are the types that
    may need one; :func:`_kinds_now` lists them."""

    def __init__(self, file: io.BytesIO, assets: Path | None, data_plane: bool, kinds: Iterable[type]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.assets = assets
        self.referenced: set[str] = set()
        self.handlers = _HANDLERS if data_plane else _BARE_HANDLERS
        table = dict(copyreg.dispatch_table)  # a pickler's own table replaces the global one: keep its entries
        for kind in kinds:
            handler = self._handler(kind)
            if handler is not None:
                table[kind] = self._bound(handler)
        self.dispatch_table = table

    def _handler(self, kind: type) -> _Handler | None:
        """How objects of ``kind`` are treated (``None``: as plain pickle does), decided once per type."""
        handlers = self.handlers
        handler = handlers.get(kind, _UNSEEN)
        if handler is _UNSEEN:
            handler = handlers[kind] = _bare_handler_for(kind) if handlers is _BARE_HANDLERS else _handler_for(kind)
        return handler  # type: ignore[no-any-return]

    def _bound(self, handler: _Handler) -> Callable[[Any], Any]:
        def reduce(obj: Any) -> Any:
            reduced = handler(self, obj)
            return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL) if reduced is NotImplemented else reduced

        return reduce

    def _asset(self, data: bytes) -> _AssetRef:
        assert self.assets is not None
        digest = hashlib.sha256(data).hexdigest()
        path = self.assets / digest
        if not path.exists():  # content-addressed: an unchanged body is not written again
            atomic_write(path, data)
        self.referenced.add(digest)
        return _AssetRef(digest)

    def _reduce_without_data_plane(self, obj: Any, emptied: dict[str, Callable[[Any], Any]]) -> Any:
        """``obj`` as plain pickle would write it, with the attributes in ``emptied`` replaced in the copy."""
        reduced = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        state = reduced[2] if isinstance(reduced, tuple) and len(reduced) > 2 else None
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        if not isinstance(state, dict):
            raise pickle.PicklingError(f"{type(obj).__qualname__}: no attribute state to leave the data plane out of")
        missing = [name for name in emptied if name not in state]
        if missing:
            raise pickle.PicklingError(
                f"{type(obj).__module__}.{type(obj).__qualname__} has no {', '.join(missing)}: "
                "this moto version keeps its data elsewhere; the data plane cannot be left out"
            )
        state = dict(state)  # the copy: the live object keeps its own
        for name, empty in emptied.items():
            state[name] = empty(state[name])
        return (*reduced[:2], state if slots is None else (state, slots), *reduced[3:])

    def _reduce_asset_ref(self, obj: _AssetRef) -> Any:
        return _load_asset, (obj.digest,)

    def _reduce_fake_key(self, obj: Any) -> Any:
        if self.assets is None:
            return NotImplemented
        state = obj.__getstate__()
        value = state.get("value")
        if not (isinstance(value, bytes) and len(value) >= ASSET_THRESHOLD):
            return NotImplemented
        state["value"] = self._asset(value)
        return _new_object, (type(obj),), state

    def _reduce_lock(self, obj: Any) -> Any:
        return _rebuild_lock, (type(obj) is _LOCK_TYPES[1],)

    def _reduce_condition(self, obj: Any) -> Any:
        return _CONDITION, (obj._lock,)

    def _reduce_weak_values(self, obj: Any) -> Any:  # its cleanup callback is a local function
        return weakref.WeakValueDictionary, (), None, None, iter(list(obj.items()))

    def _reduce_key(self, obj: Any) -> Any:
        from cryptography.hazmat.primitives import serialization

        if hasattr(obj, "private_bytes"):
            der = obj.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            return _load_private_key, (der,)
        der = obj.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return _load_public_key, (der,)

    def _reduce_mapping(self, obj: dict[Any, Any]) -> Any:
        """A dict subclass from its raw storage, rebuilt without its ``__init__`` or ``__setitem__``.

        S3's ``_VersionedKeyStore`` answers ``items()`` with the latest version of each
        key only and appends on ``__setitem__``; SSM's ``ParameterDict`` wants arguments
        in ``__init__``.  Going under both keeps every version and needs no arguments.
        """
        original = getattr(obj, "default_factory", None)
        factory = original
        if factory is not None and not _picklable_callable(factory):
            factory = _factory_for(factory())
            if factory is None:
                raise pickle.PicklingError(f"defaultdict factory {original!r} cannot be pickled")
        state = (getattr(obj, "__dict__", None) or None, list(dict.items(obj)))
        return _new_mapping, (type(obj), factory), state, None, None, _fill_mapping


_Handler = Callable[[_Pickler, Any], Any]
_UNSEEN: Any = object()
_HANDLERS: dict[type, _Handler | None] = {}
_BARE_HANDLERS: dict[type, _Handler | None] = {}  # with data_plane=False


def _handler_for(kind: type) -> _Handler | None:
    """How the pickler treats objects of ``kind`` (``None``: as plain pickle does)."""
    if kind is _AssetRef:
        return _Pickler._reduce_asset_ref
    if kind.__name__ == "FakeKey" and kind.__module__ == "moto.s3.models":
        return _Pickler._reduce_fake_key
    if kind in _LOCK_TYPES:
        return _Pickler._reduce_lock
    if kind is _CONDITION:
        return _Pickler._reduce_condition
    if issubclass(kind, dict) and kind is not dict and kind is not collections.OrderedDict:
        return _Pickler._reduce_mapping
    if kind is weakref.WeakValueDictionary:
        return _Pickler._reduce_weak_values
    if kind.__module__.startswith("cryptography.") and (
        hasattr(kind, "private_bytes") or hasattr(kind, "public_bytes")
    ):
        return _Pickler._reduce_key
    return None


def _bare_handler_for(kind: type) -> _Handler | None:
    """As :func:`_handler_for`, but a class in :data:`DATA_PLANE_ATTRIBUTES` (or a subclass) is written bare."""
    for klass in kind.__mro__:
        emptied = DATA_PLANE_ATTRIBUTES.get(f"{klass.__module__}.{klass.__qualname__}")
        if emptied is not None:
            return functools.partial(_Pickler._reduce_without_data_plane, emptied=emptied)
    return _handler_for(kind)


class _LearningPickler(_Pickler):
    """The same handlers, found by asking about every object's type as it is met (``reducer_override``): a
    Python call per object (a DynamoDB table pickles in 1.5 times plain pickle's time), but it misses no type.
    The types it finds a handler for are remembered, and the dispatch table of the next dump has them."""

    def __init__(self, file: io.BytesIO, assets: Path | None, data_plane: bool) -> None:
        super().__init__(file, assets, data_plane, ())

    def reducer_override(self, obj: Any) -> Any:
        handler = self._handler(type(obj))
        return NotImplemented if handler is None else handler(self, obj)


def _derived(root: type) -> Iterator[type]:
    """``root`` and every class that exists now and derives from it."""
    seen: set[type] = set()
    stack = [root]
    while stack:
        kind = stack.pop()
        if kind not in seen:
            seen.add(kind)
            yield kind
            stack.extend(type.__subclasses__(kind))


def _class_named(name: str) -> type | None:
    """The top-level class ``module.Class``; ``None`` if its module is not imported (no object of it can exist).

    :raises LookupError: the module is imported without it.
    """
    module_name, _, class_name = name.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        return None
    found = getattr(module, class_name, None)
    if not isinstance(found, type) or f"{found.__module__}.{found.__qualname__}" != name:
        raise LookupError(name)
    return found


def _kinds_now(data_plane: bool) -> list[type] | None:
    """Every type that may need a handler, as things stand: the fixed ones, each ``dict`` subclass, moto's
    ``FakeKey``, the types a learning pickler found one for, and (without the data plane) each class of
    :data:`DATA_PLANE_ATTRIBUTES` with the classes derived from it.  ``None`` when that cannot be told (a class
    of the list missing from its module): the learning pickler is used then."""
    kinds: list[type] = [_AssetRef, *_LOCK_TYPES, _CONDITION, weakref.WeakValueDictionary]
    kinds += _derived(dict)
    s3 = sys.modules.get("moto.s3.models")
    if s3 is not None and isinstance(getattr(s3, "FakeKey", None), type):
        kinds.append(s3.FakeKey)
    handlers = _HANDLERS if data_plane else _BARE_HANDLERS
    kinds += [kind for kind, handler in list(handlers.items()) if handler is not None]
    if not data_plane:
        for name in DATA_PLANE_ATTRIBUTES:
            try:
                found = _class_named(name)
            except LookupError:
                return None
            if found is not None:
                kinds += _derived(found)
    return kinds


def dumps(value: Any, assets: Path | None = None, data_plane: bool = True) -> tuple[bytes, set[str]]:
    """``pickle.dumps`` with moto's awkward objects handled (see the module docstring).

    With ``assets``, S3 object bodies of :data:`ASSET_THRESHOLD` bytes or more are
    written there as files named by their SHA-256; returns the pickle and the
    digests it refers to.  With ``data_plane=False``, the attributes listed in
    :data:`DATA_PLANE_ATTRIBUTES` are written empty.

    The pickler's dispatch table names the types that need a handler (:func:`_kinds_now`).  An object of a
    type it does not know that plain pickle refuses (a ``cryptography`` key the first time one is met) fails
    that attempt; the state is then pickled again by a pickler that asks about every type, and learns it.
    """
    kinds = _kinds_now(data_plane)
    if kinds is not None:
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, assets, data_plane, kinds)
        try:
            pickler.dump(value)
            return buffer.getvalue(), pickler.referenced
        except Exception:  # whatever it was, the learning pickler meets it again and says so
            logger.debug("a type without a handler in the dispatch table: pickling again, type by type", exc_info=True)
    buffer = io.BytesIO()
    learning = _LearningPickler(buffer, assets, data_plane)
    learning.dump(value)
    return buffer.getvalue(), learning.referenced


_SIGNING_KEY = "_replay_signing_key"


def keep_signing_keys(module: Any) -> None:
    """Keep the key an SNS subscription signs its notifications with on the subscription itself.

    moto makes it on the first delivery and caches it outside the object (``functools.lru_cache`` on the
    method), so a snapshot or checkpoint would lose it and the next process would sign with a new key.
    Kept on the object, it is saved and loaded with the subscription (as DER, like KMS keys).
    """
    subscription = module.Subscription
    if getattr(subscription, _SIGNING_KEY, None) is not None:
        return
    make = getattr(subscription.private_key, "__wrapped__", subscription.private_key)

    def private_key(self: Any) -> Any:
        key = self.__dict__.get(_SIGNING_KEY)
        if key is None:
            key = self.__dict__[_SIGNING_KEY] = make(self)
        return key

    subscription.private_key = private_key
    setattr(subscription, _SIGNING_KEY, True)


_DEFERRED: dict[str, Callable[[], None]] = {}  # BackendDict._id -> what loads its saved state first
_HOOKED_METHODS = ("__getitem__", "__iter__", "__len__", "__contains__", "get", "items", "keys", "values")


def _hook_backend_dicts(kind: type) -> None:
    """Make every way into a ``BackendDict`` run its deferred load first (once per process; cheap when none is)."""
    if getattr(kind, "_replay_deferred", False):
        return
    for name in _HOOKED_METHODS:
        original = getattr(kind, name)

        def hooked(self: Any, *args: Any, __original: Any = original) -> Any:
            if _DEFERRED:
                load = _DEFERRED.get(self._id)
                if load is not None:
                    load()
            return __original(self, *args)

        functools.update_wrapper(hooked, original)
        setattr(kind, name, hooked)
    kind._replay_deferred = True  # type: ignore[attr-defined]


@functools.cache
def _meta() -> dict[str, str]:
    """moto's and Python's versions: asked once (``importlib.metadata`` scans the path, milliseconds)."""
    from importlib.metadata import version

    return {"moto": version("moto"), "python": sys.version.split()[0]}


class MotoAdapter:
    """Dump and restore moto's backends (see the module docstring)."""

    def __init__(self) -> None:
        self._services: frozenset[str] | None = None
        self._referenced: dict[str, set[str]] = {}  # assets dir -> digests its last dump referred to

    def services(self) -> Iterable[str]:
        from moto.backends import list_of_moto_modules

        return sorted(set(list_of_moto_modules()) - NOT_SERVICES)

    def active(self) -> list[str]:
        """Services moto has imported and created a backend for: nothing else can hold state."""
        from moto.backends import get_backend

        found = []
        for service in self.services():
            if f"moto.{service}" in sys.modules and dict.__len__(get_backend(service)):  # type: ignore[call-overload]
                found.append(service)
        return found

    @staticmethod
    def _backend_dict(service: str) -> Any:
        from moto.backends import get_backend

        return get_backend(service)  # type: ignore[call-overload]

    def dump(self, service: str, assets: Path | None = None, data_plane: bool = True) -> bytes:
        """``service``'s backends pickled; with ``data_plane=False``, without messages, objects, items ..."""
        backend_dict = self._backend_dict(service)
        state = {
            "backends": {account: dict(regions) for account, regions in dict.items(backend_dict)},
            "attributes": {k: v for k, v in vars(backend_dict).items() if k not in _DICT_ATTRIBUTES_SKIPPED},
        }
        data, referenced = dumps(state, assets, data_plane)
        if assets is not None:
            self._referenced[str(assets)] = referenced
        return data

    def prune_assets(self, assets: Path) -> None:
        """Remove the asset files in ``assets`` that the last dump into it does not refer to.

        Called once that dump's snapshot is durable: until then, the snapshot on disk may still
        name them (removing them first would leave it pointing at files that are gone).
        """
        referenced = self._referenced.pop(str(assets), None)
        if referenced is None or not assets.is_dir():
            return
        for stale in assets.iterdir():
            if stale.name not in referenced and len(stale.name) == 64:
                stale.unlink(missing_ok=True)

    def load(self, service: str, data: bytes, assets: Path | None = None) -> None:
        _ASSETS.directory = assets
        try:
            state = pickle.loads(data)  # the caller checked the file's signature: we wrote it
        finally:
            _ASSETS.directory = None
        backend_dict = self._backend_dict(service)
        for account in [account for account in dict.keys(backend_dict) if account not in state["backends"]]:
            dict.__getitem__(backend_dict, account).clear()
        for account, regions in state["backends"].items():
            live = backend_dict[account]  # made by moto if this process has not seen the account yet
            dict.clear(live)
            dict.update(live, regions)
        for name, value in state["attributes"].items():
            current = getattr(backend_dict, name, None)
            if isinstance(current, dict) and isinstance(value, dict):
                current.clear()
                current.update(value)
            else:
                setattr(backend_dict, name, value)

    def service_for(self, name: str) -> str | None:
        """moto's backend name for a signing name (``lambda`` -> ``awslambda``, ``cognito-idp`` -> ``cognitoidp``)."""
        if self._services is None:
            self._services = frozenset(self.services())
        candidate = _SIGNING_NAMES.get(name, name.replace("-", ""))
        return candidate if candidate in self._services else None

    def affected(self, service: str) -> frozenset[str]:
        """``service`` and the services moto changes on its behalf (SNS delivers to SQS, S3 notifies ...)."""
        others = _FAN_OUT.get(service, ())
        if "*" in others:
            return frozenset(self.services())
        return frozenset({service, *others})

    def defer(self, service: str, load: Callable[[], None]) -> bool:
        """Call ``load`` before anything reaches ``service``'s backends (a request, or another service's
        code: Lambda reading an IAM role), once; :meth:`undefer` when it is loaded or must not be."""
        backend_dict = self._backend_dict(service)
        _hook_backend_dicts(type(backend_dict))
        _DEFERRED[backend_dict._id] = load
        return True

    def undefer(self, service: str) -> None:
        _DEFERRED.pop(self._backend_dict(service)._id, None)

    def reset(self, service: str) -> None:
        """moto's reset for one service: each backend reset, then all of them dropped (made anew on first use)."""
        from moto.core.base_backend import backend_lock

        backend_dict = self._backend_dict(service)
        with backend_lock:  # as moto's own reset: no backend is made meanwhile
            for account_backend in list(dict.values(backend_dict)):
                account_backend.reset()
            dict.clear(backend_dict)

    def watch(self, service: str, operation: str, request: Request) -> Callable[[], bool] | None:
        """An SQS ``ReceiveMessage`` may move messages to a dead-letter queue and return nothing
        (:mod:`replay.adapters.moto_effects`); nothing else needs watching."""
        if service == "sqs" and operation == "ReceiveMessage":
            return watch_receive(request)
        return None

    def meta(self) -> dict[str, str]:
        return dict(_meta())
