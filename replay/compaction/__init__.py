"""Compaction: which recorded calls a log can lose without changing what its replay builds (rules per service).
May import the core modules and ``record`` (entries); nothing above.
Entry points: :func:`plan_compaction` and the :class:`CompactionPlan` it returns (used by ``storage.rewrite``).
"""

from .plan import CompactionPlan as CompactionPlan
from .plan import plan_compaction as plan_compaction

__all__ = ["CompactionPlan", "plan_compaction"]
