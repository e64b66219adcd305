"""``python -m weighbridge`` is the same as the ``weighbridge`` command."""

from .cli import run

run()
