"""The plan and the planner: :class:`CompactionPlan`, :func:`plan_compaction`, and the planner they share.

:class:`_Planner` is the planner core (:mod:`replay.compaction.core`) with the
rules of each modelled service mixed in (:mod:`~replay.compaction.sqs`,
:mod:`~replay.compaction.s3`, :mod:`~replay.compaction.dynamodb`,
:mod:`~replay.compaction.sns`): each service class adds its handler, which
:meth:`_Planner.__init__` registers by service name, and extends the core's hooks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from ..record.entry import Entry
from .core import _CODE
from .dynamodb import _DynamoDBRules
from .s3 import _S3Rules
from .sns import _SnsRules
from .sqs import _SqsRules

__all__ = ["CompactionPlan", "plan_compaction"]

logger = logging.getLogger("replay.compaction")


@dataclasses.dataclass
class CompactionPlan:
    """Which entries of a log to keep: :meth:`keeps` by 0-based ordinal, counts by rule."""

    read: int
    by_rule: dict[str, int]
    _marks: bytearray = dataclasses.field(default_factory=bytearray, repr=False, compare=False)

    def keeps(self, index: int) -> bool:
        """Whether the entry fed at ``index`` (0-based) must be kept."""
        if not 0 <= index < self.read:
            raise IndexError(f"entry {index} is not in a plan of {self.read} entries")
        return index >= len(self._marks) or self._marks[index] == 0

    @property
    def dropped(self) -> int:
        return sum(self.by_rule.values())

    @property
    def kept(self) -> int:
        return self.read - self.dropped


def plan_compaction(entries: Iterable[Entry], from_empty: bool = True) -> CompactionPlan:
    """Plan which of ``entries`` (consumed once, in order) a compacted log keeps.

    :param from_empty: the log is replayed into an empty emulator; with ``False``
        it applies on top of unknown earlier state and only what the log itself
        created (or wrote in full) may be dropped.
    """
    planner = _Planner(from_empty)
    for entry in entries:
        planner.feed(entry)
    return planner.finish()


class _Planner(_SqsRules, _S3Rules, _DynamoDBRules, _SnsRules):
    """One pass over a log: the planner core with every service's rules."""

    def __init__(self, from_empty: bool) -> None:
        super().__init__(from_empty)
        self.handlers.update(sqs=self._sqs, s3=self._s3, dynamodb=self._dynamodb, sns=self._sns)

    def finish(self) -> CompactionPlan:
        self._close()
        marks = self.marks
        by_rule = {name: count for name, code in _CODE.items() if (count := marks.count(code))}
        plan = CompactionPlan(read=self.count, by_rule=by_rule, _marks=marks)
        logger.debug("compaction plan: %d entries, %d to drop %s", plan.read, plan.dropped, by_rule)
        return plan
