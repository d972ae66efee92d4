"""The `featstore` command line (console script ``featstore.cli:featstore_app``).

Each command parses its options, calls one library function and renders the result; library errors
become one line and exit code 1 in ``featstore.cli.boundary``, the one error boundary that the
`probes` command line (``probes.cli``) shares: probes builds on featstore, never the other way."""

from featstore.cli.commands import featstore_app

__all__ = ["featstore_app"]
