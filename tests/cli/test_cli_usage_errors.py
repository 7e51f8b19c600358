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


def _all_commands():
    from edgekit.cli import command

    root = command()
    out = []
    for name, cmd in root.commands.items():
        subs = getattr(cmd, "commands", None)
        out += [[name, sub] for sub in subs] if subs else [[name]]
    return out


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p))
def test_every_command_help_has_an_example_and_clean_metavars(path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "edgekit", *path, "--help"], capture_output=True, text=True,
                       timeout=120, env={**__import__("os").environ, "COLUMNS": "120"})
    assert r.returncode == 0, r.stderr
    assert "Example: edgekit " + " ".join(path) in r.stdout, r.stdout
    for raw in ("<bool>", "<str>", "<path>", "<int>", "list[str]", "issue "):
        assert raw not in r.stdout, (raw, r.stdout)
