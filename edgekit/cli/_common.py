"""What every CLI command shares: error reporting, the stderr console, JSON output."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from typing import Any, Callable, TypeVar

import typer

from edgekit.errors import EdgekitError, Terminated, debug_enabled, first_line

# errno values that mean "the destination cannot be written", reported as one line naming the file
_WRITE_ERRNOS = {"EROFS", "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EFBIG"}

F = TypeVar("F", bound=Callable[..., Any])


def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line on stderr; return the Exit to raise."""
    print(f"edgekit: error: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn an EdgekitError into one line on stderr and its exit code; any other exception into
    one line naming it (tracebacks only with EDGEKIT_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except EdgekitError as e:
            if debug_enabled():
                traceback.print_exc()
            raise fail(str(e), e.exit_code) from None
        except Terminated:
            raise fail("terminated", 143) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except OSError as e:
            import errno

            if errno.errorcode.get(e.errno or 0) not in _WRITE_ERRNOS:
                raise fail(_unexpected(e), 1) from None
            if debug_enabled():
                traceback.print_exc()
            where = e.filename or "?"
            raise fail(f"{where}: cannot write ({e.strerror or e}) — choose a folder you can write to", 1) from None
        except Exception as e:  # a bug in edgekit or a library: still one line, traceback on request
            raise fail(_unexpected(e), 1) from None

    return wrapper  # type: ignore[return-value]


def _unexpected(e: BaseException) -> str:
    if debug_enabled():
        traceback.print_exc()
    return (f"unexpected {type(e).__name__}: {first_line(e)} (run with EDGEKIT_DEBUG=1 for the traceback "
            "and please report it)")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def warn(message: str) -> None:
    """One warning line on stderr (the command goes on)."""
    print(f"edgekit: warning: {message}", file=sys.stderr, flush=True)


def check_threads(threads: int | None) -> None:
    """Warn when ``--threads`` asks for more threads than this machine has CPUs: the runtimes
    oversubscribe, which is slower, not faster."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads is not None and threads > cpus:
        warn(f"--threads {threads} is more than the {cpus} CPU(s) this process may use; expect it to be slower, "
             f"not faster (try --threads {cpus})")
