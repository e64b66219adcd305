"""``python -m weighbridge.cli`` runs the command, as ``python -m weighbridge`` does."""

from . import run

run()
