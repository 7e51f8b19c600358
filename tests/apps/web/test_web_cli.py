"""`edgekit app web` and `edgekit app serve` without a browser: what the folder holds, which
artifact the page gets (LiteRT.js takes float32/int32/uint8 tensors only), one-line errors, the
server's headers and printed URLs. Runtime files come from a stand-in node_modules (their bytes
do not matter here), so these tests need neither npm nor Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from web_helpers import REPO, Server

from edgekit.webapp import RUNTIMES

DEFAULT_BUNDLE = REPO / "apps" / "camera" / "default_bundle"


@pytest.fixture
def fake_modules(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "node_modules"
    for entries in RUNTIMES.values():
        for pkg, files, _ in entries:
            for rel in files:
                (root / pkg / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / pkg / rel).write_text(f"// stand-in {pkg}/{rel}\n")
    monkeypatch.setenv("EDGEKIT_WEB_NODE_MODULES", str(root))
    return root


def bundle_copy(tmp_path: Path, edit=None) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, out, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    if edit:
        m = json.loads((out / "edgekit.json").read_text())
        edit(m)
        (out / "edgekit.json").write_text(json.dumps(m))
    return out


def app(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", "app", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_app_web_writes_a_self_contained_folder(tmp_path, fake_modules):
    out = tmp_path / "web"
    r = app("web", str(DEFAULT_BUNDLE), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "edgekit app serve" in r.stdout
    for rel in ("index.html", "app.js", "preprocess.js", "style.css", "bundle/edgekit.json", "bundle/model.onnx",
                "bundle/model.tflite", "vendor/ort/ort.wasm.min.mjs", "vendor/ort/ort-wasm-simd-threaded.wasm",
                "vendor/litert/core/index.js", "vendor/litert/core/litert_wasm_threaded_internal.wasm",
                "vendor/litert/wasm-utils/index.js"):
        assert (out / rel).is_file(), rel
    m = json.loads((out / "bundle" / "edgekit.json").read_text())
    assert sorted(a["path"] for a in m["artifacts"]) == ["model.onnx", "model.tflite"]
    assert m["preprocess"] == json.loads((DEFAULT_BUNDLE / "edgekit.json").read_text())["preprocess"]
    # offline: the page's own files load nothing from another origin
    for name in ("index.html", "app.js", "preprocess.js", "style.css"):
        text = (out / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    again = app("web", str(DEFAULT_BUNDLE), "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1


INT8_TFLITE = REPO / "tests" / "conformance" / "cases" / "int8_input" / "model.tflite"  # int8 input in the file


def int8_bundle(tmp_path: Path, edit=None) -> Path:
    """The default bundle with its model.tflite replaced by a file whose input is int8: the rule
    reads the file, not the manifest (an int8 bundle's manifest lists the float tensors its
    session takes)."""
    bundle = bundle_copy(tmp_path, edit)
    shutil.copy(INT8_TFLITE, bundle / "model.tflite")
    return bundle


def test_int8_tflite_bundle_gets_the_onnx_artifact_and_one_line(tmp_path, fake_modules):
    bundle = int8_bundle(tmp_path)
    out = tmp_path / "web"
    r = app("web", str(bundle), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["formats"] == ["onnx"]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "LiteRT.js" in lines[0] and "int8" in lines[0] and "model.onnx" in lines[0], lines
    m = json.loads((out / "bundle" / "edgekit.json").read_text())
    assert [a["format"] for a in m["artifacts"]] == ["onnx"]  # the page offers no LiteRT.js backend
    assert not (out / "vendor" / "litert").exists() and not (out / "bundle" / "model.tflite").exists()


def test_int8_tflite_only_is_refused_in_one_line(tmp_path, fake_modules):
    def tflite_only(m):
        m["artifacts"] = [a for a in m["artifacts"] if a["format"] == "tflite"]

    bundle = int8_bundle(tmp_path, tflite_only)
    (bundle / "model.onnx").unlink()
    r = app("web", str(bundle), "--out", str(tmp_path / "web"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "LiteRT.js takes only float32, int32, uint8" in lines[0] and "--to onnx" in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "web" / "index.html").exists()


def test_errors_are_one_line(tmp_path, fake_modules, monkeypatch):
    r = app("web", str(tmp_path), "--out", str(tmp_path / "web"))
    assert r.returncode == 2 and "not a bundle folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("EDGEKIT_WEB_NODE_MODULES", str(tmp_path / "nowhere"))
    r = app("web", str(DEFAULT_BUNDLE), "--out", str(tmp_path / "web2"))
    assert r.returncode == 2 and "npm ci" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    (tmp_path / "file").write_text("x")
    r = app("web", str(DEFAULT_BUNDLE), "--out", str(tmp_path / "file"))
    assert r.returncode == 2 and "not a folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = app("serve", str(tmp_path), "--port", "0")
    assert r.returncode == 2 and "no index.html" in r.stderr, r.stderr


def test_serve_sends_isolation_headers_and_prints_urls(tmp_path, fake_modules):
    out = tmp_path / "web"
    assert app("web", str(DEFAULT_BUNDLE), "--out", str(out)).returncode == 0
    server = Server(out)
    try:
        text = "\n".join(server.lines)
        assert "http://localhost:" in text and "HTTPS or on localhost" in text, text
        with urllib.request.urlopen(server.url) as resp:
            assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert resp.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert b"app.js" in resp.read()
        with urllib.request.urlopen(server.url + "vendor/ort/ort-wasm-simd-threaded.wasm") as resp:
            assert resp.headers["Content-Type"] == "application/wasm"
            assert resp.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        with urllib.request.urlopen(server.url + "app.js") as resp:
            assert resp.headers["Content-Type"].startswith("text/javascript")
    finally:
        server.close()
