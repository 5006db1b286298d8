"""S3 rules: bucket lifetimes, overwritten objects, deletes of nothing, aborted multipart uploads.

:class:`_S3Rules` follows path-style requests only, and keeps the writes of one
key as a :class:`~replay.compaction.core._Chain` while the bucket's object rule
applies (no versioning, object lock, notifications, logging or replication).
Object and bucket tags outlive their bucket in moto, which keeps earlier
lifetimes of the same bucket name.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, unquote, urlsplit

from ..record.entry import Entry, Request
from .core import (
    _DELETE,
    _PUT,
    _READS,
    _REFERS,
    _S3_ABORT,
    _S3_OVER,
    _S3_REDUNDANT,
    _WRITES,
    _Chain,
    _Item,
    _Life,
    _PlannerCore,
)
from .parsing import _digest, _Opaque, _pieces

__all__: list[str] = []

_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
_S3_OBJECT = re.compile(rb"<Object>(.*?)</Object>", re.S)
_S3_KEY = re.compile(rb"<Key>(.*?)</Key>", re.S)
_TARGET_BUCKET = re.compile(rb"<TargetBucket>([^<]+)</TargetBucket>")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_S3_PATH_HOST = re.compile(r"^s3([.-](dualstack|fips))?[.-]([^.]*\.)?amazonaws\.com$")


class _Bucket(_Life):
    __slots__ = ("bucket_tags", "object_tags", "rule", "token")

    def __init__(self, ident: int, name: str, start: int, created: bool, token: str):
        super().__init__(ident, "s3", name, [("s3", name), ("name", name)], start, created)
        self.rule = created  # the object rule applies (no versioning, notifications, logging ...)
        self.bucket_tags = False  # bucket tags survive its delete: a later bucket of this name sees them
        self.object_tags = False  # so do object tags
        self.token = token


class _Upload:
    __slots__ = ("bucket", "calls", "key", "life", "tagged")

    def __init__(self, bucket: str, key: str, calls: list[int], life: _Bucket, tagged: bool):
        self.bucket = bucket
        self.key = key
        self.calls = calls
        self.life = life
        self.tagged = tagged


class _S3Rules(_PlannerCore):
    """The S3 handler and its hooks."""

    def _segment(self, start: int, empty: bool) -> None:
        super()._segment(start, empty)
        self.s3_keys: dict[str, dict[str | bytes, _Chain]] = {}
        self.uploads: dict[str, _Upload] = {}

    def _rules_off(self, life: _Life, kind: int) -> None:
        if isinstance(life, _Bucket):
            self._s3_rule_off(life)
        else:
            super()._rules_off(life, kind)

    def _settle(self) -> None:
        for chains in self.s3_keys.values():
            for chain in chains.values():
                self._settle_s3(chain, every_one_ended=False)
        super()._settle()

    def _kept_lifetimes(self) -> set[int]:
        """Buckets whose tags a later bucket of the same name sees, and buckets EventBridge may have seen created."""
        kept = super()._kept_lifetimes()
        buckets = [life for life in self.lives if isinstance(life, _Bucket)]
        later: dict[str, int] = {}  # bucket name -> latest lifetime start
        for life in buckets:
            later[life.name] = max(later.get(life.name, -1), life.start)
        for life in buckets:
            if (life.bucket_tags and later[life.name] > life.start) or (
                self.events_at is not None and self.events_at < life.start
            ):
                kept.add(life.id)
        return kept

    def _s3(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        host = request.index.get("host", "").rsplit(":", 1)[0].lower() if request.index.get("host") else ""
        if host and not (
            host.startswith(("localhost", "localstack", "host.docker.internal", "["))
            or "." not in host
            or _IPV4.match(host)
            or _S3_PATH_HOST.match(host)
            or host.endswith(".svc.cluster.local")
        ):
            raise _Opaque(f"virtual-hosted request to {host}")
        raw = request.path.lstrip("/")
        bucket = raw.split("/", 1)[0]
        if not bucket:
            raise _Opaque(f"{entry.operation} on no bucket")
        token = self._token(request)
        self._claim("s3", (bucket,), token)
        parts = unquote(request.path).split("/")
        key = "/".join(parts[2:]) if "/" in raw and raw.split("/", 1)[1] else None
        op = entry.operation
        life = self.open.get(("s3", bucket))
        if op == "CreateBucket" and key is None:
            if not isinstance(life, _Bucket):
                created = self._created(("s3", bucket))
                life = _Bucket(self._new_id(), bucket, ordinal, created, token)
                self._life(("s3", bucket), life)
            self._own(ordinal, life)
            if (request.header("x-amz-bucket-object-lock-enabled") or "").lower() == "true":
                self._s3_rule_off(life)
            return
        if not isinstance(life, _Bucket):
            life = _Bucket(self._new_id(), bucket, ordinal, False, token)
            self._life(("s3", bucket), life)
        self._own(ordinal, life)
        if key is None:
            self._s3_bucket_call(ordinal, entry, life, op)
        else:
            self._s3_object_call(ordinal, entry, life, op, key)

    def _s3_rule_off(self, life: _Bucket) -> None:
        """No object rule in this bucket from now on; what is pending stays."""
        life.rule = False
        self.s3_keys.pop(life.name, None)
        for upload_id in [uid for uid, upload in self.uploads.items() if upload.life is life]:
            del self.uploads[upload_id]

    def _s3_bucket_call(self, ordinal: int, entry: Entry, life: _Bucket, op: str) -> None:
        request = entry.request
        if op == "DeleteBucket":
            self._end(("s3", life.name), ordinal)
            chains = self.s3_keys.get(life.name)
            if chains:
                for name in [name for name, chain in chains.items() if not chain.tagged]:
                    self._settle_s3(chains.pop(name), every_one_ended=False)
            return
        if op == "DeleteObjects":
            self._s3_delete_objects(ordinal, entry, life)
            return
        if op in ("PutBucketVersioning", "PutObjectLockConfiguration"):
            self._s3_rule_off(life)
        elif op in ("PutBucketTagging", "DeleteBucketTagging"):
            life.bucket_tags = True
        elif op == "PutBucketNotificationConfiguration":
            life.nodrop = True  # moto sends a test event at once, and events on every write
            self._s3_rule_off(life)
            self._scan(ordinal, life, request.body, _WRITES)
            return
        elif op in ("PutBucketLogging", "PutBucketReplication", "PostObject") or not op.startswith(
            ("PutBucket", "DeleteBucket")
        ):
            if op != "PostObject":
                life.nodrop = True
            self._s3_rule_off(life)
            for body in _pieces(request):
                for found in _TARGET_BUCKET.finditer(body):
                    target = html.unescape(found.group(1).decode("utf-8", "replace"))
                    self._mention(ordinal, life, ("s3", target), _REFERS)
        if op != "PostObject":
            for body in _pieces(request):
                self._scan(ordinal, life, body)

    def _chain(self, life: _Bucket, key: str) -> _Chain | None:
        if not life.rule:
            return None
        chains = self.s3_keys.setdefault(life.name, {})
        name = _digest(key)
        chain = chains.get(name)
        if chain is None:
            chain = chains[name] = _Chain(present=not life.created)
        return chain

    def _s3_delete_objects(self, ordinal: int, entry: Entry, life: _Bucket) -> None:
        body = entry.request.body
        keys = []
        for found in _S3_OBJECT.finditer(body):
            inner = found.group(1)
            if b"<VersionId>" in inner:
                self._s3_rule_off(life)
            match = _S3_KEY.search(inner)
            if match is None:
                raise _Opaque("DeleteObjects entry without a key")
            keys.append(html.unescape(match.group(1).decode("utf-8")))
        if not keys or b"<Error>" in entry.response.body:
            self._s3_rule_off(life)
        for key in keys:
            chain = self._chain(life, key)
            if chain is not None:
                chain.pending.append(_Item([ordinal], _DELETE, True, life))
                chain.live = None

    def _s3_object_call(self, ordinal: int, entry: Entry, life: _Bucket, op: str, key: str) -> None:
        request = entry.request
        query = request.query
        if op in ("CopyObject", "UploadPartCopy"):
            self._s3_copy_source(ordinal, request, life)
        if op == "PutObject" or op == "CopyObject":
            conditional = request.header("if-match") is not None or request.header("if-none-match") is not None
            tagged = bool(request.header("x-amz-tagging"))
            if op == "CopyObject":
                life.object_tags = True
                if (request.header("x-amz-tagging-directive") or "").upper() != "REPLACE":
                    self._s3_merge_copy(ordinal, request, life, key)
                    return
            elif tagged:
                life.object_tags = True
            self._s3_write(life, key, [ordinal], conditional, tagged)
        elif op == "CreateMultipartUpload":
            found = _UPLOAD_ID.search(entry.response.body)
            tagged = bool(request.header("x-amz-tagging"))
            life.object_tags |= tagged
            if found and life.rule:
                upload_id = found.group(1).decode()
                self.uploads[upload_id] = _Upload(life.name, key, [ordinal], life, tagged)
        elif op in ("UploadPart", "UploadPartCopy"):
            upload = self.uploads.get(dict(parse_qsl(query)).get("uploadId", ""))
            if upload is not None:
                upload.calls.append(ordinal)
        elif op == "CompleteMultipartUpload":
            upload = self.uploads.pop(dict(parse_qsl(query)).get("uploadId", ""), None)
            conditional = request.header("if-match") is not None or request.header("if-none-match") is not None
            if upload is None or upload.life is not life or upload.key != key:
                self._s3_write(life, key, [ordinal], True, True)  # from parts we did not see: stays
            else:
                self._s3_write(life, key, [*upload.calls, ordinal], conditional, upload.tagged)
        elif op == "AbortMultipartUpload":
            upload = self.uploads.pop(dict(parse_qsl(query)).get("uploadId", ""), None)
            if upload is not None and upload.life is life and life.rule:
                self._drop([*upload.calls, ordinal], _S3_ABORT)
        elif op == "DeleteObject":
            chain = self._chain(life, key)
            if chain is not None:
                versioned = "versionId" in dict(parse_qsl(query))
                chain.pending.append(_Item([ordinal], _DELETE, versioned, life))
                chain.live = None
        elif op in (
            "PutObjectTagging",
            "DeleteObjectTagging",
            "PutObjectAcl",
            "PutObjectRetention",
            "PutObjectLegalHold",
        ):
            if op.endswith("Tagging"):
                life.object_tags = True
            chain = self._chain(life, key)
            if chain is not None:
                if op.endswith("Tagging"):
                    chain.tagged = True
                if chain.live is not None:
                    chain.live.calls.append(ordinal)
        elif op == "RestoreObject":
            chain = self._chain(life, key)
            if chain is not None and chain.live is not None:
                self._keep(chain.live, life)
        else:
            life.nodrop = True
            self._s3_rule_off(life)

    def _s3_copy_source(self, ordinal: int, request: Request, life: _Bucket) -> None:
        source = request.header("x-amz-copy-source") or ""
        parsed = urlsplit(source)
        path = unquote(parsed.path).lstrip("/")
        if "/" not in path:
            raise _Opaque(f"copy source {source!r}")
        bucket, key = path.split("/", 1)
        if bucket != life.name:
            self._mention(ordinal, life, ("s3", bucket), _READS)
        source_life = self.open.get(("s3", bucket))
        if isinstance(source_life, _Bucket):
            chain = self._chain(source_life, key)
            if chain is not None and chain.live is not None:
                self._keep(chain.live, source_life)

    def _s3_source_tagged(self, request: Request) -> bool:
        path = unquote(urlsplit(request.header("x-amz-copy-source") or "").path).lstrip("/")
        bucket, _, key = path.partition("/")
        source_life = self.open.get(("s3", bucket))
        chains = self.s3_keys.get(bucket) if isinstance(source_life, _Bucket) and source_life.rule else None
        chain = chains.get(_digest(key)) if chains is not None else None
        return chain is None or chain.tagged

    def _s3_merge_copy(self, ordinal: int, request: Request, life: _Bucket, key: str) -> None:
        """A copy that merges the source's tags into the key's (stale) tags: everything since they were set stays."""
        for earlier in self.by_key.get(("s3", life.name), ()):
            if earlier is not life and isinstance(earlier, _Bucket) and earlier.object_tags:
                earlier.pinned = True
        chain = self._chain(life, key)
        if chain is None:
            return
        for item in chain.pending:
            self._keep(item, life)
        item = _Item([ordinal], _PUT, False, life)
        chain.pending.append(item)
        chain.live = item
        chain.tagged = chain.tagged or self._s3_source_tagged(request)

    def _s3_write(self, life: _Bucket, key: str, calls: list[int], conditional: bool, tagged: bool) -> None:
        """A write that replaces the key's object and its tags."""
        chain = self._chain(life, key)
        if chain is None:
            return
        if conditional:
            for item in chain.pending:
                self._keep(item, life)
        self._settle_s3(chain, every_one_ended=True)
        item = _Item(calls, _PUT, conditional, life)
        chain.pending = [item]
        chain.live = item
        chain.tagged = tagged

    def _keep(self, item: _Item, current: _Life) -> None:
        item.keep = True
        if item.life is not current:
            item.life.pinned = True

    def _settle_s3(self, chain: _Chain, every_one_ended: bool) -> None:
        """Decide the pending writes of one key: overwritten or deleted ones go, deletes of nothing go."""
        present = chain.present
        last = len(chain.pending) - 1
        redundant_ok = self.empty
        for position, item in enumerate(chain.pending):
            if item.kind == _DELETE:
                if not item.keep and not present and redundant_ok:
                    self._drop(item.calls, _S3_REDUNDANT)
                present = False
            elif item.keep or (position == last and not every_one_ended):
                present = True
            else:
                self._drop(item.calls, _S3_OVER)
        chain.present = present
        chain.pending = []
        chain.live = None
