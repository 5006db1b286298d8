"""The paths of the control API, named once for the server that answers them and the clients that call them.

LocalStack's own (``/_localstack/...``: health, state save/load/reset) and replay's (``/_replay/...``).
"""

from __future__ import annotations

__all__ = ["COMPACT_PATH", "CONTROL_ROOTS", "EXPORT_PATH", "HEALTH_PATH", "STATE_PREFIX"]

HEALTH_PATH = "/_localstack/health"
STATE_PREFIX = "/_localstack/state/"
COMPACT_PATH = "/_replay/compact"
EXPORT_PATH = "/_replay/export"
CONTROL_ROOTS = ("/_localstack", "/_replay")
"""Paths under these roots are the control API's, never the emulator's."""
