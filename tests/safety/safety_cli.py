"""Helpers of the data-safety tests (imported as ``safety_cli``: a name no other test folder uses,
so it never collides with another folder's ``conftest``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``edgekit ARGS`` in a child process; returns the completed process (text output)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGEKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess, code: int) -> str:
    """Assert the command failed with ``code`` and one ``edgekit: error:`` line, no traceback;
    return that line."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code, f"exit {r.returncode} (want {code}); stderr: {r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [ln for ln in lines if ln.startswith("edgekit: error:")]
    assert len(errors) == 1, f"want one error line, got: {lines}"
    return errors[0]


def copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def write_manifest(folder: Path, data: dict) -> None:
    (folder / "edgekit.json").write_text(json.dumps(data))
