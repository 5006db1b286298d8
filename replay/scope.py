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
import re
from collections.abc import Callable, Iterable

from .errors import ConfigError

__all__ = ["SERVICES_SETTING", "PersistenceScope", "ServiceSelection"]


SERVICES_SETTING = "PERSISTENCE_SERVICES"

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_FORMAT = "comma-separated service names such as sqs,s3,dynamodb, or all of them prefixed with - to exclude them"
_NAMED_AS = "services are named as in the SigV4 signing name, e.g. sqs, s3, dynamodb, lambda"


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
