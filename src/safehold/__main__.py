"""``python -m safehold``: the same as the ``safehold`` command."""

from safehold.cli.main import run

run()
