"""What both command lines share: the consoles, the one error boundary, shared options and formats.

It lives in featstore, the lower package, so that `probes` builds on it and featstore never imports upward."""

from __future__ import annotations

import errno
import os
import sys
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

_WIDE = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120  # piped output: wide tables, not 80 columns
out = Console(width=_WIDE)  # results
err = Console(stderr=True, width=_WIDE)  # progress, messages
DEBUG_VAR = "FEATSTORE_DEBUG"



def folder_option(value: Optional[Path]) -> Optional[Path]:
    """A folder option given a file: one line and exit 1 before anything runs (it may not exist yet)."""
    if value is not None and value.exists() and not value.is_dir():
        err.print(f"[bold red]error:[/] {value} is a file; a folder is expected here", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    return value


# Options shared by several commands.
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="Feature store root. Default: $FEATSTORE_CACHE or ./cache.", show_default=False, callback=folder_option)]


def boundary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The one place library errors become a single line on stderr and exit code 1."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from featstore.errors import FeatstoreError

        try:
            return fn(*args, **kwargs)
        except (FeatstoreError, ValueError, OSError) as e:
            if os.environ.get(DEBUG_VAR):
                raise
            err.print(f"[bold red]error:[/] {environment_message(e)}", highlight=False, soft_wrap=True)  # one line
            raise typer.Exit(1) from None
        except typer.Exit:
            raise
        except Exception as e:  # a bug: still one line by default, the traceback on demand
            if os.environ.get(DEBUG_VAR):
                raise
            err.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {e} (a bug; {DEBUG_VAR}=1 shows the traceback)",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            what = "terminated (SIGTERM)" if type(e).__name__ == "Terminated" else "interrupted"
            err.print(f"[yellow]{what}[/]: finished shards are kept; rerun the same command to resume")
            raise typer.Exit(143 if what.startswith("terminated") else 130) from None

    return run


_ERRNO_TEXT = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.ENOTDIR: "not a folder", errno.EISDIR: "is a folder, expected a file",
               errno.EEXIST: "exists and is not a folder", errno.ENOENT: "no such file or folder"}


def environment_message(e: BaseException) -> str:
    """One line for a fault of the environment (disk full, read-only, a file where a folder belongs):
    `<what>: <path>`, found even when h5py or another library wrapped the OSError."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _ERRNO_TEXT:
            path = seen.filename or _path_in(str(e))
            return f"{_ERRNO_TEXT[seen.errno]}: {path}" if path else f"{_ERRNO_TEXT[seen.errno]} ({e})"
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    for code, words in ((errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")):
        if words in text:
            return f"{_ERRNO_TEXT[code]}: {_path_in(text) or text}"
    return text


def _path_in(text: str) -> str:
    import re

    m = re.search(r"name = '([^']+)'|'(/[^']+)'|(/\S+)", text)
    return next((g for g in m.groups() if g), "") if m else ""


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
