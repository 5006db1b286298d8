"""SNS rules: topic lifetimes, and subscriptions cancelled before anything was published to them.

:class:`_SnsRules` follows both the query and the JSON protocol.  A topic that
published, or was subscribed to by another principal, keeps its lifetime: a
publish delivers elsewhere, and ``DeleteTopic`` removes only the caller's
subscriptions.  Calls of SNS that name no topic go to the unmodelled services.
"""

from __future__ import annotations

import html
import re
from typing import Any

import orjson

from ..record.entry import Entry
from .core import _SNS_SUB, _WRITES, _Life, _PlannerCore
from .parsing import _form, _json, _Opaque, _region, _text

__all__: list[str] = []

_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}(\.fifo)?")
_XML_TOPIC_ARN = re.compile(rb"<TopicArn>([^<]+)</TopicArn>")
_XML_SUBSCRIPTION_ARN = re.compile(rb"<SubscriptionArn>([^<]+)</SubscriptionArn>")


class _Topic(_Life):
    __slots__ = ("opaque", "published", "subscribers", "subscriptions")

    def __init__(self, ident: int, name: str, keys: list[tuple[str, ...]], start: int, created: bool):
        super().__init__(ident, "sns", name, keys, start, created)
        self.published = 0  # publishes so far
        self.opaque = False  # no subscription rule
        self.subscribers: set[str] = set()  # principals whose subscriptions live in their own backends
        self.subscriptions: list[_Subscription] = []

    def droppable(self) -> bool:
        """Not a topic that published (deliveries went elsewhere) or that the subscription rule cannot follow."""
        return super().droppable() and not self.published and not self.opaque

    def rules_off(self, kind: int) -> None:
        self.opaque = True  # no subscription rule


class _Subscription:
    __slots__ = ("calls", "cancelled", "pinned", "published", "token", "topic")

    def __init__(self, topic: _Topic, token: str):
        self.topic = topic
        self.token = token
        self.calls: list[int] = []
        self.published = topic.published
        self.cancelled = False
        self.pinned = False


class _SnsRules(_PlannerCore):
    """The SNS handler and its hooks."""

    def _segment(self, start: int, empty: bool) -> None:
        super()._segment(start, empty)
        self.subscriptions: dict[str, _Subscription] = {}

    def _settle(self) -> None:
        for subscription in self.subscriptions.values():
            self._settle_subscription(subscription)
        super()._settle()

    def _topic(self, ordinal: int, arn: str, region: str, create: bool) -> _Topic:
        key = ("sns", region, arn)
        life = self.open.get(key)
        if not isinstance(life, _Topic):
            name = arn.rsplit(":", 1)[-1]
            arn_region = arn.split(":")[3] if arn.count(":") >= 5 else region
            keys = [("sns", arn_region, name), ("name", name)]
            life = _Topic(self._new_id(), name, keys, ordinal, create and self._created(key))
            self._life(key, life)
        return life

    def _sns(self, ordinal: int, entry: Entry) -> None:
        request = entry.request
        region = _region(request, "sns")
        token = self._token(request)
        json_protocol = bool(request.index.get("x-amz-target"))
        params: dict[str, Any] = _json(request.body) if json_protocol else _form(request)
        op = entry.operation
        response = entry.response.body
        if op == "CreateTopic":
            arn = self._response_value(response, "TopicArn", _XML_TOPIC_ARN, json_protocol)
            if not arn:
                raise _Opaque("CreateTopic answered no ARN")
            topic = self._topic(ordinal, arn, region, create=True)
            self._own(ordinal, topic)
            self._scan_params(ordinal, topic, params, skip=("Name",))
            return
        subscription_arn = _text(params.get("SubscriptionArn"))
        arn = _text(params.get("TopicArn") or params.get("ResourceArn"))
        if op in ("Publish", "PublishBatch") and not arn:
            arn = _text(params.get("TargetArn"))
        if not arn and subscription_arn.count(":") >= 6:
            arn = subscription_arn.rsplit(":", 1)[0]
        if (
            not arn.startswith("arn:")
            or arn.split(":")[2] != "sns"
            or arn.count(":") != 5
            or not _TOPIC_NAME.fullmatch(arn.rsplit(":", 1)[1])
        ):
            self._other(ordinal, entry)  # not about a topic (platform endpoints, SMS ...)
            return
        topic = self._topic(ordinal, arn, region, create=False)
        self._own(ordinal, topic)
        if op == "DeleteTopic":
            self._end(("sns", region, arn), ordinal)
            if topic.subscribers - {token}:
                topic.nodrop = True  # other principals' subscriptions outlive the topic
        elif op in ("Publish", "PublishBatch"):
            topic.published += 1
        elif op == "Subscribe":
            self._subscribe(ordinal, entry, topic, params, token, json_protocol)
        elif op in ("Unsubscribe", "SetSubscriptionAttributes"):
            subscription = self.subscriptions.get(subscription_arn)
            if subscription is None or subscription.topic is not topic:
                return
            subscription.calls.append(ordinal)
            if op == "Unsubscribe":
                del self.subscriptions[subscription_arn]
                if subscription.token == token and subscription.published == topic.published:
                    subscription.cancelled = True
                self._settle_subscription(subscription)
            else:
                self._scan_params(ordinal, topic, params)
        elif op == "ConfirmSubscription":
            for subscription in topic.subscriptions:
                subscription.pinned = True
        elif op in ("SetTopicAttributes", "TagResource", "UntagResource", "AddPermission", "RemovePermission"):
            self._scan_params(ordinal, topic, params)
        else:
            topic.opaque = topic.nodrop = True
            self._scan_params(ordinal, topic, params)

    @staticmethod
    def _response_value(body: bytes, name: str, pattern: re.Pattern[bytes], json_protocol: bool) -> str:
        if json_protocol:
            return _text(_json(body).get(name))
        found = pattern.search(body)
        return html.unescape(found.group(1).decode("utf-8", "replace")) if found else ""

    def _subscribe(
        self, ordinal: int, entry: Entry, topic: _Topic, params: dict[str, Any], token: str, json_protocol: bool
    ) -> None:
        endpoint = _text(params.get("Endpoint"))
        self._scan(ordinal, topic, endpoint.encode("utf-8", "replace"), _WRITES)
        self._scan_params(ordinal, topic, params, skip=("Endpoint", "TopicArn"))
        topic.subscribers.add(token)
        arn = self._response_value(entry.response.body, "SubscriptionArn", _XML_SUBSCRIPTION_ARN, json_protocol)
        subscription = self.subscriptions.get(arn)
        if subscription is None or subscription.topic is not topic:
            subscription = _Subscription(topic, token)
            if not arn.startswith(_text(params.get("TopicArn")) + ":"):
                subscription.pinned = True
            else:
                self.subscriptions[arn] = subscription
            topic.subscriptions.append(subscription)
        if subscription.token != token:
            subscription.pinned = True
        subscription.calls.append(ordinal)

    def _scan_params(self, ordinal: int, topic: _Topic, params: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
        for name, value in params.items():
            if name not in skip and name != "Action":
                data = value if isinstance(value, str) else orjson.dumps(value).decode()
                self._scan(ordinal, topic, data.encode("utf-8", "replace"))

    def _settle_subscription(self, subscription: _Subscription) -> None:
        topic = subscription.topic
        if subscription.cancelled and not subscription.pinned and not topic.opaque and topic.created:
            self._drop(subscription.calls, _SNS_SUB)
        subscription.calls = []
