"""DynamoDB rules: table lifetimes, and item writes later replaced in full or deleting nothing.

:class:`_DynamoDBRules` follows the JSON protocol, and keeps the writes of one
item key as a :class:`~replay.compaction.core._Chain` while the table's item
rule applies (no stream, nothing else refers to it, no operation not modelled
here).  Conditional writes, writes that answer with the old values and batch or
transaction writes are kept, with every earlier write of their keys.  Writes
still pending when the table is deleted or the segment ends stay.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from ..record.entry import Entry
from .core import (
    _DDB_OVER,
    _DDB_REDUNDANT,
    _DELETE,
    _PUT,
    _READS,
    _UPDATE,
    _Chain,
    _Item,
    _Life,
    _PlannerCore,
)
from .parsing import _digest, _json, _Opaque, _region, _text

__all__: list[str] = []


def _dynamo_value(value: Any) -> str | None:
    """A key attribute value, canonical as moto compares it (numbers by value)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, raw),) = value.items()
    if not isinstance(raw, str):
        return None
    if kind == "N":
        try:
            number = Decimal(raw)
        except InvalidOperation:
            return None
        return "N:0" if number.is_zero() else f"N:{number.normalize()}"
    if kind in ("S", "B"):
        return f"{kind}:{raw}"
    return None


class _Table(_Life):
    __slots__ = ("hash_key", "items", "range_key", "token")

    def __init__(self, ident: int, name: str, keys: list[tuple[str, ...]], start: int, created: bool, token: str):
        super().__init__(ident, "dynamodb", name, keys, start, created)
        self.hash_key: str | None = None
        self.range_key: str | None = None
        self.items: dict[str | bytes, _Chain] | None = {} if created else None  # None: no item rule
        self.token = token

    def rules_off(self, kind: int) -> None:
        self.items = None  # no item rule: what is pending stays


class _DynamoDBRules(_PlannerCore):
    """The DynamoDB handler (it needs no hook: a table settles its writes as they are replaced)."""

    def _table(self, ordinal: int, name: str, token: str, region: str) -> _Table:
        if name.startswith("arn:"):
            name = name.rsplit(":", 1)[-1].removeprefix("table/").split("/", 1)[0]
        self._claim("dynamodb", (region, name), token)
        key = ("dynamodb", region, name)
        life = self.open.get(key)
        if not isinstance(life, _Table):
            life = _Table(self._new_id(), name, [key, ("name", name)], ordinal, False, token)
            self._life(key, life)
        return life

    def _dynamodb(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        if not (request.index.get("x-amz-target") or "").startswith("DynamoDB_"):
            raise _Opaque("not the JSON protocol")
        region = _region(request, "dynamodb")
        token = self._token(request)
        body = _json(request.body)
        op = entry.operation
        if op == "CreateTable":
            name = _text(body.get("TableName"))
            if not name:
                raise _Opaque("CreateTable without a name")
            self._claim("dynamodb", (region, name), token)
            key = ("dynamodb", region, name)
            if key in self.open:
                raise _Opaque(f"CreateTable of {name} while it exists")
            table = _Table(self._new_id(), name, [key, ("name", name)], ordinal, True, token)
            self._life(key, table)
            self._own(ordinal, table)
            for part in body.get("KeySchema") or ():
                if part.get("KeyType") == "HASH":
                    table.hash_key = _text(part.get("AttributeName"))
                elif part.get("KeyType") == "RANGE":
                    table.range_key = _text(part.get("AttributeName"))
            stream = body.get("StreamSpecification")
            if table.hash_key is None or (isinstance(stream, dict) and stream.get("StreamEnabled")):
                table.items = None
            self._scan(ordinal, table, request.body)
            return
        if op in ("BatchWriteItem", "TransactWriteItems"):
            self._dynamodb_batch(ordinal, body, op, token, region)
            return
        reference = body.get("TableName") or body.get("ResourceArn") or body.get("TableArn")
        if not isinstance(reference, str) or not reference:
            # PartiQL and friends name tables inside statements: every table here may be touched
            for life in self.open.values():
                if isinstance(life, _Table):
                    life.items = None
                    life.nodrop = True
            self._scan(ordinal, None, request.body)
            return
        table = self._table(ordinal, reference, token, region)
        self._own(ordinal, table)
        if op == "DeleteTable":
            self._end(("dynamodb", region, table.name), ordinal)
            table.items = None  # what is pending stays: DeleteTable answers with the item count
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            self._item_write(ordinal, table, body, op)
        elif op == "UpdateTable":
            stream = body.get("StreamSpecification")
            if (isinstance(stream, dict) and stream.get("StreamEnabled")) or body.get("ReplicaUpdates"):
                table.items = None
            if body.get("ReplicaUpdates"):
                table.nodrop = True
            self._scan(ordinal, table, request.body)
        elif op in ("TagResource", "UntagResource", "UpdateTimeToLive", "UpdateContinuousBackups"):
            self._scan(ordinal, table, request.body)
        else:  # backups, restores, exports, imports, Kinesis destinations ...
            table.items = None
            table.nodrop = True
            self._scan(ordinal, table, request.body)
            for other in ("TargetTableName", "SourceTableArn"):
                if isinstance(body.get(other), str):
                    peer = self._table(ordinal, body[other], token, region)
                    peer.items = None
                    peer.nodrop = True

    def _item_key(self, table: _Table, attributes: Any) -> str | bytes | None:
        if not isinstance(attributes, dict) or table.hash_key is None:
            return None
        first = _dynamo_value(attributes.get(table.hash_key))
        if first is None:
            return None
        if table.range_key is None:
            return _digest(first)
        second = _dynamo_value(attributes.get(table.range_key))
        return None if second is None else _digest(f"{first}\x00{second}")

    def _item_write(self, ordinal: int, table: _Table, body: dict[str, Any], op: str) -> None:
        if table.items is None:
            return
        key = self._item_key(table, body.get("Item") if op == "PutItem" else body.get("Key"))
        if key is None:
            raise _Opaque(f"{op} without a key of {table.name}")
        chain = table.items.get(key)
        if chain is None:
            chain = table.items[key] = _Chain(present=False)
        # a condition depends on the earlier writes, and so does an answer with the old values in it
        conditional = (
            bool(body.get("ConditionExpression"))
            or "Expected" in body
            or body.get("ReturnValues") not in (None, "NONE")
        )
        kind = {"PutItem": _PUT, "UpdateItem": _UPDATE, "DeleteItem": _DELETE}[op]
        if conditional:
            for item in chain.pending:
                item.keep = True
            chain.pending.append(_Item([ordinal], kind, True, table))
            return
        if kind == _UPDATE:
            chain.pending.append(_Item([ordinal], kind, False, table))
            return
        self._settle_items(chain)
        if kind == _DELETE and not chain.present and self.empty:
            self.marks[ordinal] = _DDB_REDUNDANT
            return
        chain.pending = [_Item([ordinal], kind, False, table)]

    def _settle_items(self, chain: _Chain) -> None:
        """The key is written in full: earlier writes not pinned go."""
        present = chain.present
        for item in chain.pending:
            if item.keep:
                present = item.kind != _DELETE
            else:
                self._drop(item.calls, _DDB_OVER)
        chain.present = present
        chain.pending = []

    def _dynamodb_batch(self, ordinal: int, body: dict[str, Any], op: str, token: str, region: str) -> None:
        writes: list[tuple[str, Any, int]] = []
        if op == "BatchWriteItem":
            for name, requests in (body.get("RequestItems") or {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        writes.append((name, request["PutRequest"].get("Item"), _PUT))
                    elif "DeleteRequest" in request:
                        writes.append((name, request["DeleteRequest"].get("Key"), _DELETE))
                    else:
                        raise _Opaque("BatchWriteItem request of an unknown kind")
        else:
            for item in body.get("TransactItems") or ():
                for kind_name, kind in (
                    ("Put", _PUT),
                    ("Update", _UPDATE),
                    ("Delete", _DELETE),
                    ("ConditionCheck", -1),
                ):
                    part = item.get(kind_name)
                    if isinstance(part, dict):
                        attributes = part.get("Item") if kind == _PUT else part.get("Key")
                        writes.append((_text(part.get("TableName")), attributes, kind))
        for name, attributes, kind in writes:
            table = self._table(ordinal, name, token, region)
            self._mention(ordinal, None, ("dynamodb", region, table.name), _READS)
            if table.items is None:
                continue
            key = self._item_key(table, attributes)
            if key is None:
                table.items = None
                continue
            chain = table.items.get(key)
            if chain is None:
                chain = table.items[key] = _Chain(present=False)
            for pending in chain.pending:
                pending.keep = True
            if kind >= 0:
                chain.pending.append(_Item([ordinal], kind, True, table))
