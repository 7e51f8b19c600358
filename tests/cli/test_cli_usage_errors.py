"""Usage errors through the real entry point: one line on stderr, exit code 2, no box, no traceback."""

from __future__ import annotations

import pytest

from edgekit.cli import main


@pytest.mark.parametrize("argv, needle", [
    (["bench"], "Missing argument"),
    (["bench", "m.onnx", "--runs", "0"], "--runs"),
    (["no-such-command"], "No such command"),
    (["inspect", "--no-such-option", "m.onnx"], "No such option"),
])
def test_usage_errors_are_one_line_with_exit_code_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("edgekit: error:") and needle in err
    assert "Traceback" not in err and "╭" not in err


def test_bare_command_shows_help_and_succeeds(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 0
    assert "Usage" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("edgekit ")
