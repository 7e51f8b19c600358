"""Errors a user can cause, and how the CLI reports them.

Every mistake a user can make (a missing file, a corrupt model, a wrong feed, an unknown
backend) raises an :class:`EdgekitError` subclass. Its message is one line that says what went
wrong, where (file, node, tensor) and what to do. The CLI prints that line on stderr and exits
with :attr:`EdgekitError.exit_code`; the traceback is shown only with ``EDGEKIT_DEBUG=1``.

Example::

    >>> raise InvalidModelFile("model.tflite", "not a TFLite flatbuffer (identifier b'PK\\x03\\x04')",
    ...                        hint="re-export it with `edgekit convert`")
    Traceback (most recent call last):
    edgekit.errors.InvalidModelFile: model.tflite: not a TFLite flatbuffer ... re-export it ...
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "EdgekitError",
    "UsageError",
    "ModelFileNotFound",
    "InvalidModelFile",
    "BackendUnavailable",
    "MissingDependency",
    "FeedError",
    "ConversionError",
    "VerificationFailed",
    "LintFailed",
    "ZooError",
    "DemoError",
    "Terminated",
    "debug_enabled",
    "first_line",
]


MAX_MESSAGE = 1000  # characters of one error line


def first_line(e: BaseException, limit: int = 240) -> str:
    """The first non-empty line of an exception's message (its class name when it has none), cut
    to ``limit`` characters at a word boundary with an ellipsis: for quoting a library's error
    inside edgekit's one-line message."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    return text


def debug_enabled() -> bool:
    """True when ``EDGEKIT_DEBUG`` asks for tracebacks."""
    return os.environ.get("EDGEKIT_DEBUG", "").strip() not in ("", "0", "false", "no")


class EdgekitError(Exception):
    """Base of every error edgekit raises for a user's mistake or environment.

    ``where`` (a file, a node, a tensor) and ``hint`` (what to do) are folded into the one-line
    message so that ``str(err)`` is what the CLI prints.
    """

    exit_code = 1

    def __init__(self, message: str, *, where: str | os.PathLike | None = None, hint: str | None = None):
        self.message = message
        self.where = str(where) if where is not None else None
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text = f"{text} — {self.hint}"
        # One line, whatever the parts held, and of a readable length even when a part quotes a
        # huge value from a corrupt file.
        text = " ".join(text.split())
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


class UsageError(EdgekitError):
    """A command-line or API argument that cannot be used as given (exit code 2)."""

    exit_code = 2


class ModelFileNotFound(EdgekitError):
    """The model file or bundle named does not exist."""

    def __init__(self, path: str | os.PathLike, hint: str = "check the path"):
        super().__init__("no such file or directory", where=path, hint=hint)


class InvalidModelFile(EdgekitError):
    """A file that exists but is not a model edgekit can open (truncated, random bytes, wrong kind)."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str | None = None):
        super().__init__(reason, where=path, hint=hint or "re-export the model, or check that the file was copied whole")


class BackendUnavailable(EdgekitError):
    """A runtime backend that cannot be used on this host (not installed, wrong OS, no delegate)."""


class MissingDependency(EdgekitError):
    """An optional package is missing; the message names the exact ``pip install``."""

    def __init__(self, package: str, purpose: str, extra: str | None = None):
        cmd = f"pip install 'edgekit[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs the Python package '{package}'", hint=f"install it with: {cmd}")
        self.package = package


class FeedError(EdgekitError):
    """Inputs given to ``Session.run`` that do not match the model (name, shape or dtype)."""


class ConversionError(EdgekitError):
    """A stage of ``edgekit convert`` failed (capture, rewrite, export); names the stage and node."""

    def __init__(self, stage: str, message: str, *, where: str | None = None, hint: str | None = None):
        self.stage = stage
        super().__init__(f"[{stage}] {message}", where=where, hint=hint)


class VerificationFailed(EdgekitError):
    """An artifact does not compute what its source computes, beyond tolerance (exit code 3)."""

    exit_code = 3


class LintFailed(EdgekitError):
    """A model breaks rules of a target profile (exit code 3)."""

    exit_code = 3


class ZooError(EdgekitError):
    """Unknown zoo model, missing weights, or weights that do not fit the model."""


class DemoError(EdgekitError):
    """A camera or video source that cannot be opened or read."""


def display_path(path: str | os.PathLike) -> str:
    """A path as the user typed it (relative stays relative) for messages."""
    return str(Path(path))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a CI timeout, a service manager) stopped the command. A subclass of
    ``KeyboardInterrupt`` so every clean-up path Ctrl-C takes (temporary bundles, partial
    recordings) runs for it too; the CLI exits 143."""
