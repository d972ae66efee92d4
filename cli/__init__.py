"""Command lines `featstore` and `probes` (console scripts ``cli:featstore_app`` and ``cli:probes_app``).

Each command parses its options, calls one library function and renders the result; library errors
become one line and exit code 1 in ``cli.common.boundary``."""

from cli.featstore_cmds import featstore_app
from cli.probes_cmds import probes_app

__all__ = ["featstore_app", "probes_app"]
