"""The installed `edgekit` console script, run as a user would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ("convert", "inspect", "lint", "bench", "run", "demo", "zoo", "doctor")


def _listed_commands(help_text: str) -> set[str]:
    """Command names in the first column of the help's command list."""
    return set(re.findall(r"^\W*?([a-z][a-z-]*)  ", help_text, flags=re.MULTILINE))


def _script() -> str:
    beside = Path(sys.executable).with_name("edgekit")
    found = str(beside) if beside.exists() else shutil.which("edgekit")
    if not found:
        pytest.skip("the edgekit console script is not installed")
    return found


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_DEBUG"}
    return subprocess.run([_script(), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_console_script_end_to_end(models, tmp_path):
    help_ = _run("--help")
    assert help_.returncode == 0
    assert set(COMMANDS) <= _listed_commands(help_.stdout), help_.stdout

    info = _run("inspect", models["classifier_onnx"], "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["op_histogram"]["Conv"] == 1

    noise = tmp_path / "noise.tflite"
    noise.write_bytes(os.urandom(1000))
    bad = _run("inspect", noise)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("edgekit: error: ")
    assert "noise.tflite" in bad.stderr and "Traceback" not in bad.stderr

    doctor = _run("doctor", "--json")
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["python"]["version"]


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    assert set(COMMANDS) <= _listed_commands(result.stdout), result.stdout
