"""The distribution installs one namespace, and the runtime side stays light."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"edgekit": "edgekit", "edgekit.converters": "converters", "edgekit.runtimes": "runtimes",
           "edgekit.apps": "apps"}


def _declared() -> tuple[set[str], dict[str, str]]:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(tool["packages"]), tool["package-dir"]


def test_package_dir_maps_the_three_top_level_folders_into_edgekit():
    _, package_dir = _declared()
    assert package_dir == MAPPING


def test_every_folder_with_an_init_is_listed_and_nothing_else():
    declared, _ = _declared()
    found = set()
    for package, folder in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([package, *rel.parts]))
    missing = sorted(found - declared)
    stale = sorted(declared - found)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert not stale, f"listed in pyproject.toml but not a package folder: {stale}"


def test_no_top_level_converters_or_runtimes_package_is_importable_from_site_packages():
    code = ("import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
            "print([n for n in ('converters', 'runtimes', 'apps') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_edgekit_does_not_load_heavy_libraries():
    code = ("import sys, edgekit, edgekit.runtimes, edgekit.bundle; edgekit.load; "
            "print(sorted(m for m in ('torch', 'onnx', 'coremltools', 'litert_torch', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_wheel_carries_the_shipped_data(tmp_path):
    """`pip install .` (not only -e) must carry weights, photos, the demo bundle and profiles."""
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("edgekit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [
        *(f"edgekit/zoo/weights/{p.name}" for p in (ROOT / "edgekit/zoo/weights").glob("*.safetensors")),
        *(f"edgekit/assets/photos/{p.name}" for p in (ROOT / "edgekit/assets/photos").glob("*.jpg")),
        *(f"edgekit/apps/camera/default_bundle/{n}" for n in ("edgekit.json", "model.tflite", "model.onnx")),
        *(f"edgekit/targets/{p.name}" for p in (ROOT / "edgekit/targets").glob("*.toml")),
        "edgekit/zoo/data/imagenet_classes.txt",
    ]
    assert len(expected) > 15
    missing = [n for n in expected if n not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not any(n.split("/")[0] in ("converters", "runtimes", "apps") for n in names)
