"""``python -m replay`` is the ``replay`` command."""

from .cli import run

run()
