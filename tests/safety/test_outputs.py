"""Outputs never destroy what edgekit did not write: --force, races at the final rename, --out
spellings and refusals, run --output, demo recordings, read-only folders, killed processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from safety_cli import copy_bundle, one_line_error, run_cli

import edgekit
from edgekit._fs import fresh_path, is_partial, partial_path, reap_partials
from edgekit.bundle import foreign_entry, read_manifest
from edgekit.errors import EdgekitError, UsageError

torch = pytest.importorskip("torch")


def _convert(src, out, **kw):
    return edgekit.convert(f"{src}:build", formats="onnx", out=out, bench_runs=0, **kw)


def _partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if is_partial(p.name)] if folder.exists() else []


# -- --force ----------------------------------------------------------------------------------------
def test_force_refuses_a_folder_with_a_file_edgekit_did_not_write(tiny_source, tiny_bundle, tmp_path):
    out = copy_bundle(tiny_bundle, tmp_path / "b")
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(UsageError, match="holds 'notes.txt', which edgekit did not write"):
        _convert(tiny_source, out, force=True)
    assert (out / "notes.txt").read_text() == "my notes" and (out / "model.onnx").exists()
    assert not _partials(out) and not _partials(tmp_path)


def test_force_refuses_a_manifest_edgekit_did_not_write(tiny_source, tiny_bundle, tmp_path):
    out = copy_bundle(tiny_bundle, tmp_path / "b")
    data = json.loads((out / "edgekit.json").read_text())
    data["tools"].pop("edgekit")
    (out / "edgekit.json").write_text(json.dumps(data))
    assert foreign_entry(out) == "edgekit.json"
    with pytest.raises(UsageError, match="holds 'edgekit.json'"):
        _convert(tiny_source, out, force=True)


def test_force_replaces_an_edgekit_bundle_and_an_empty_folder(tiny_source, tiny_bundle, tmp_path):
    out = copy_bundle(tiny_bundle, tmp_path / "b")
    inode = out.stat().st_ino
    before = read_manifest(out).created
    time.sleep(1.1)  # the manifest's creation time has one-second resolution
    _convert(tiny_source, out, force=True)
    assert read_manifest(out).created != before and out.stat().st_ino == inode  # same folder, new bundle
    assert sorted(os.listdir(out)) == ["edgekit.json", "model.onnx"]
    empty = tmp_path / "empty"
    empty.mkdir()
    _convert(tiny_source, empty)  # an empty folder needs no --force
    assert read_manifest(empty).artifacts


def test_non_empty_folder_without_force_is_refused_before_any_work(tiny_source, tiny_bundle, tmp_path):
    out = copy_bundle(tiny_bundle, tmp_path / "b")
    r = run_cli("convert", f"{tiny_source}:build", "--to", "onnx", "--out", out)
    assert "output folder is not empty" in one_line_error(r, 2) and "--force" in r.stderr
    assert "capture" not in r.stdout  # refused before the model was even built


# -- the final rename ------------------------------------------------------------------------------
def test_a_file_put_into_out_during_the_conversion_survives_and_the_conversion_says_it_lost(
        tiny_source, tiny_bundle, tmp_path):
    out = copy_bundle(tiny_bundle, tmp_path / "b")
    old = (out / "model.onnx").read_bytes()

    def meddle(event):
        if event.stage == "verify" and event.status == "start":
            (out / "late.txt").write_text("written by another program during the conversion")

    with pytest.raises(EdgekitError, match="'late.txt' appeared while this conversion ran"):
        _convert(tiny_source, out, force=True, progress=meddle)
    assert (out / "late.txt").exists() and (out / "model.onnx").read_bytes() == old  # nothing replaced
    assert not _partials(out)


def test_two_conversions_into_one_new_folder_the_second_to_finish_loses(tiny_source, tmp_path):
    out = tmp_path / "new"
    done = []

    def race(event):  # while A verifies, B runs from start to finish into the same new folder
        if event.stage == "verify" and event.status == "start" and not done:
            done.append(True)
            _convert(tiny_source, out, task="other")

    with pytest.raises(EdgekitError, match="appeared while this conversion ran.*was not written"):
        _convert(tiny_source, out, progress=race)
    assert read_manifest(out).task == "other"  # B's bundle, intact
    assert not _partials(tmp_path)


def test_two_conversions_into_one_existing_folder_the_second_to_finish_loses(tiny_source, tiny_bundle, tmp_path):
    out = copy_bundle(tiny_bundle, tmp_path / "b")
    done = []

    def race(event):
        if event.stage == "verify" and event.status == "start" and not done:
            done.append(True)
            _convert(tiny_source, out, force=True, task="other")

    with pytest.raises(EdgekitError, match="(appeared|changed|disappeared) while this conversion ran"):
        _convert(tiny_source, out, force=True, progress=race)
    assert read_manifest(out).task == "other"


# -- --out spellings and refusals -------------------------------------------------------------------
@pytest.mark.parametrize("spelling", [".", "./"])
def test_out_dot_writes_into_the_current_empty_folder(tiny_source, tmp_path, spelling):
    here = tmp_path / "here"
    here.mkdir()
    r = run_cli("convert", f"{tiny_source}:build", "--to", "onnx", "--out", spelling, cwd=here)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(here)) == ["edgekit.json", "model.onnx"]
    assert not _partials(tmp_path) and not _partials(here)


def test_out_tilde_relative_and_absolute(tiny_source, tmp_path):
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    env = {"HOME": str(home)}
    for out, where in (("~/tilde", home / "tilde"), ("rel/dir", work / "rel" / "dir"), (str(tmp_path / "abs"),
                                                                                          tmp_path / "abs")):
        r = run_cli("convert", f"{tiny_source}:build", "--to", "onnx", "--out", out, cwd=work, env=env)
        assert r.returncode == 0, r.stderr
        assert read_manifest(where).artifacts, out


@pytest.mark.parametrize("out", ["/", "~", "..", "../..", "{home}", "{parent}"])
def test_roots_home_and_the_current_folders_parents_are_refused_before_any_work(tiny_source, tmp_path, out):
    home = tmp_path / "home"
    work = home / "a" / "b"
    work.mkdir(parents=True)
    out = out.format(home=home, parent=work.parent)
    r = run_cli("convert", f"{tiny_source}:build", "--to", "onnx", "--out", out, "--force", cwd=work,
                env={"HOME": str(home)})
    line = one_line_error(r, 2)
    assert any(w in line for w in ("filesystem root", "home folder", "contains the current folder")), line
    assert "capture" not in r.stdout
    assert not any(is_partial(p.name) for p in tmp_path.rglob("*")), "refused before writing anything"


def test_output_path_that_is_a_file_is_refused(tiny_source, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        _convert(tiny_source, f)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write into: a read-only tmpfs as root (root ignores permissions),
    else a folder with mode 0555."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"as root a read-only folder needs a read-only mount, which failed: {r.stderr.decode()[:200]}")
        yield folder
        subprocess.run(["umount", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_read_only_destination_is_one_line_naming_the_folder(tiny_source, tiny_bundle, read_only_folder, tmp_path):
    r = run_cli("convert", f"{tiny_source}:build", "--to", "onnx", "--out", read_only_folder / "b")
    line = one_line_error(r, 2)
    assert str(read_only_folder) in line and "read-only" in line, line
    feed = tmp_path / "x.npy"
    np.save(feed, np.zeros((1, 3, 8, 8), np.float32))
    r = run_cli("run", tiny_bundle, "--input", feed, "--output", read_only_folder / "y.npy")
    line = one_line_error(r, 2)
    assert str(read_only_folder) in line and "read-only" in line, line


# -- run --output ----------------------------------------------------------------------------------
@pytest.fixture
def feed(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32))
    return path


def test_run_output_refuses_an_existing_file_without_force(tiny_bundle, feed, tmp_path):
    target = tmp_path / "y.npy"
    target.write_bytes(b"precious")
    r = run_cli("run", tiny_bundle, "--input", feed, "--output", target)
    assert "exists" in one_line_error(r, 2) and target.read_bytes() == b"precious"
    r = run_cli("run", tiny_bundle, "--input", feed, "--output", target, "--force")
    assert r.returncode == 0, r.stderr
    assert np.load(target).shape == (1, 4, 8, 8)


def test_run_never_overwrites_its_own_input(tiny_bundle, feed):
    before = feed.read_bytes()
    for extra in ([], ["--force"]):
        r = run_cli("run", tiny_bundle, "--input", feed, "--output", feed, *extra)
        assert "own input" in one_line_error(r, 2)
    assert feed.read_bytes() == before
    r = run_cli("run", tiny_bundle, "--input", feed, "--output", tiny_bundle / "model.npy", "--force")
    assert "own input" in one_line_error(r, 2)  # nothing is written into the model bundle either


def test_run_default_output_takes_a_fresh_name(tiny_bundle, feed, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "x.out.npy").write_bytes(b"an earlier run")
    r = run_cli("run", tiny_bundle, "--input", feed, "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert (cwd / "x.out.npy").read_bytes() == b"an earlier run"
    assert json.loads(r.stdout)["saved"] == str(cwd / "x.out-2.npy")


# -- the demo's recording -----------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_default_recording_never_replaces_an_earlier_one(tmp_path):
    pytest.importorskip("cv2")
    (tmp_path / "edgekit-demo.mp4").write_bytes(b"yesterday's recording")
    r = run_cli("demo", "--headless", "--frames", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "edgekit-demo.mp4").read_bytes() == b"yesterday's recording"
    assert (tmp_path / "edgekit-demo-2.mp4").stat().st_size > 1000
    r = run_cli("demo", "--headless", "--frames", "2", "--record", "edgekit-demo.mp4", cwd=tmp_path)
    assert "--record exists" in one_line_error(r, 2)


# -- killed processes ----------------------------------------------------------------------------------
SLOW_SOURCE = """
import time, torch

class Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)

def build():
    time.sleep(float(__import__("os").environ.get("SLOW_S", "0")))
    return Slow().eval(), (torch.rand(1, 3, 8, 8),)
"""


def _start_slow_conversion(tmp_path, out) -> subprocess.Popen:
    src = tmp_path / "slow.py"
    src.write_text(SLOW_SOURCE)
    env = {**os.environ, "SLOW_S": "60"}
    return subprocess.Popen([sys.executable, "-m", "edgekit", "convert", f"{src}:build", "--to", "onnx", "--out",
                             str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_partial(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _partials(folder)
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no partial folder appeared")


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    proc = _start_slow_conversion(tmp_path, tmp_path / "out")
    _wait_for_partial(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err, (proc.returncode, err)
    assert not _partials(tmp_path) and not (tmp_path / "out").exists()


def test_sigkill_leftovers_are_removed_by_the_next_run(tiny_source, tmp_path):
    proc = _start_slow_conversion(tmp_path, tmp_path / "out")
    name = _wait_for_partial(tmp_path, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert (tmp_path / name).exists()  # SIGKILL leaves no chance to clean up
    _convert(tiny_source, tmp_path / "other")  # the next run in that folder
    assert not (tmp_path / name).exists()


def test_reaper_keeps_partials_of_live_processes_and_foreign_files(tmp_path):
    mine = partial_path(tmp_path / "x", folder=True)  # this process: alive
    dead = tmp_path / f".y.edgekit-{2**22 + 12345}-00ff00ff.partial"
    dead.mkdir()
    lookalike = tmp_path / ".y.edgekit-notapid.partial"
    lookalike.write_text("a user's file")
    reap_partials(tmp_path)
    assert mine.exists() and not dead.exists() and lookalike.exists()


def test_fresh_path_numbers_before_the_suffix(tmp_path):
    (tmp_path / "a.out.npy").write_text("")
    (tmp_path / "a.out-2.npy").write_text("")
    assert fresh_path(tmp_path / "a.out.npy") == tmp_path / "a.out-3.npy"
    assert fresh_path(tmp_path / "new.mp4") == tmp_path / "new.mp4"
