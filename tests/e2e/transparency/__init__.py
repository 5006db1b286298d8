"""Scenarios of the transparency suite (``tests/e2e/test_transparency.py``), one module per service.

:func:`load` imports every module of this package, which registers its scenarios in
:data:`transparency.core.SCENARIOS`.
"""

from __future__ import annotations

import importlib
import pkgutil

from transparency.core import SCENARIOS, Scenario


def load() -> dict[str, Scenario]:
    """Every scenario of every module here, by name, in module order (alphabetical) and then class order."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "core":
            importlib.import_module(f"{__name__}.{module.name}")
    return SCENARIOS
