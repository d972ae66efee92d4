"""The `probes` command line (console script ``probes.cli:probes_app``).

Its commands share featstore's error boundary, consoles and progress bars
(``featstore.cli.boundary``): one way errors reach the user across both tools."""

from probes.cli.commands import probes_app

__all__ = ["probes_app"]
