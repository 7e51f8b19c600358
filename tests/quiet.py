"""``quiet()``: converters print progress bars and warnings; tests keep their log readable.

This folder is on ``sys.path`` (``pythonpath`` in pyproject.toml): ``from quiet import quiet``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow stdout, stderr and warnings for the duration of the block."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
