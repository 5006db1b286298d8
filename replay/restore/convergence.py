"""Whether a replayed call converged with its recording: each difference explained, or a divergence.

For every :class:`~replay.restore.diff.Change` between a recorded response and its
replay, :meth:`Judge.explain` gives the reason it is fine, or ``None``:

* ``"clock"``: both values are times of the same form inside the recorded
  call's own window (:class:`replay.restore.timestamps.CallWindow`);
* ``"mapped"``: both values are generated ids of the same shape
  (:func:`replay.record.identifiers.id_pairs`; inside ARNs and URLs, every part that
  differs), consistent with what the mapping already holds, and not under a
  key that holds a digest or a name; they are learned then, and later requests
  are rewritten with them (:mod:`replay.restore.mapping`).

Nothing else is explained: a status word, an enum, a name, a number, a
boolean, an attribute value, a digest (ETag, MD5 ...), a date outside the
window, a missing field, a different status code.  A change is judged an id
*before* it is learned, so a divergence never enters the mapping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ..record.identifiers import digest_key, id_pairs, name_key
from .diff import Change
from .mapping import IdMapping
from .timestamps import CallWindow

__all__ = ["Judge", "Reason"]

Reason = Literal["clock", "mapped"]


class Judge:
    """Explains the changes of one replay, in order, learning ids into ``mapping`` (``None``: map nothing)."""

    def __init__(self, mapping: IdMapping | None) -> None:
        self.mapping = mapping

    def explain(self, change: Change, window: CallWindow, learn: bool = True) -> Reason | None:
        """Why ``change`` is fine, or ``None`` (a divergence); with ``learn``, new ids are mapped from now on."""
        if change.where == "status":
            return None
        if window.explains(change.recorded, change.replayed):
            return "clock"
        mapping = self.mapping
        old, new = change.recorded, change.replayed
        if mapping is None or not isinstance(old, str) or not isinstance(new, str):
            return None
        if digest_key(change.key) or name_key(change.key):
            return None
        pairs = id_pairs(old, new)
        if pairs is None or not mapping.fits(pairs):
            return None
        if all(mapping.pairs.get(old_id) == new_id for old_id, new_id in pairs):
            return "mapped"
        if not learn:
            return None
        mapping.learn(pairs)
        return "mapped"

    def unexplained(self, found: Iterable[Change], window: CallWindow, learn: bool = True) -> list[Change]:
        """The changes among ``found`` that nothing explains: the call diverged if there is any."""
        return [change for change in found if self.explain(change, window, learn) is None]
