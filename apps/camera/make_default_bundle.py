"""Regenerate the demo's shipped bundle from the shipped quicksrnet_small_x2 weights.

    python -m edgekit.apps.camera.make_default_bundle           # rewrite apps/camera/default_bundle/
    python -m edgekit.apps.camera.make_default_bundle --check   # compare the bundle with the weights

The bundle (TFLite and ONNX, input 1x3x240x320 → 1x3x480x640, a few hundred KB) ships inside
the package so ``edgekit demo`` runs on a Raspberry Pi without torch. It is made by
:func:`edgekit.convert` like any other bundle (capture, passes, export, verification against
PyTorch) and swapped into place only when complete. ``tests/apps/test_demo_default_bundle.py``
checks that it was made from the weights that ship now (sha256 in the manifest) and that it
computes what they compute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edgekit.apps.camera.models import DEFAULT_BUNDLE_DIR, DEFAULT_SR_INPUT, DEFAULT_SR_MODEL

__all__ = ["build", "check", "main"]

FORMATS = ("tflite", "onnx")
KEEP = ("__init__.py",)  # the folder is a package so that wheels carry it; its __init__ stays


def shipped_weights() -> tuple[Path, bool]:
    """The shipped weights file, and whether the model card names it (``pretrained=True``
    works); a file in ``edgekit/zoo/weights`` the card does not list yet is used by path."""
    from edgekit import zoo
    from edgekit.zoo.registry import WEIGHTS_DIR

    card = zoo.card(DEFAULT_SR_MODEL)
    if card.weights is not None:
        return WEIGHTS_DIR / card.weights, True
    path = WEIGHTS_DIR / f"{DEFAULT_SR_MODEL}.safetensors"
    if path.is_file():
        return path, False
    raise SystemExit(f"{DEFAULT_SR_MODEL} has no shipped weights yet (edgekit/zoo/weights); train them first "
                     "with `python -m edgekit.zoo.train_sr`")


def build(out: Path = DEFAULT_BUNDLE_DIR, progress=None) -> Path:
    """Convert the shipped weights into ``out`` (replacing the bundle files, keeping ``__init__.py``)."""
    import edgekit

    weights, on_card = shipped_weights()  # fails early, with the reason, when there are none
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".build", dir=out.parent))
    try:
        staged = work / "bundle"
        by_card = dict(pretrained=True) if on_card else dict(weights=weights)
        result = edgekit.convert(DEFAULT_SR_MODEL, formats=list(FORMATS), out=staged, input_shapes=[DEFAULT_SR_INPUT],
                                 progress=progress, **by_card)
        bad = [f"{a.format}: {a.status} ({a.reason})" for a in result.artifacts if a.status != "passed"]
        if bad:
            raise SystemExit("conversion did not pass verification for every format: " + "; ".join(bad))
        if not on_card:  # name the shipped file as pretrained=True would, not by this machine's path
            from edgekit.bundle import read_manifest, write_manifest

            m = read_manifest(staged)
            m.source["weights"] = f"edgekit:{weights.name}"
            write_manifest(staged, m)
        for name in KEEP:
            if (out / name).exists():
                shutil.copy2(out / name, staged / name)
        os.chmod(staged, 0o755)  # readable by everyone once installed (mkdtemp/mkstemp make 0700/0600)
        for p in staged.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        old = work / "old"
        if out.exists():
            os.replace(out, old)
        os.replace(staged, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def check(folder: Path = DEFAULT_BUNDLE_DIR) -> list[str]:
    """Problems that make ``folder`` not the bundle of the shipped weights (empty: it is)."""
    from edgekit.bundle import is_bundle, read_manifest, sha256_file

    if not is_bundle(folder):
        return [f"{folder} is not a bundle (no edgekit.json)"]
    m = read_manifest(folder)
    problems = []
    weights, _ = shipped_weights()
    want = sha256_file(weights)
    got = (m.source or {}).get("weights_sha256")
    if got != want:
        problems.append(f"made from weights {str(got)[:12]}…, the shipped {weights.name} is {want[:12]}…")
    if m.task != "super-resolve":
        problems.append(f"task is {m.task}, not super-resolve")
    formats = sorted(a.format for a in m.artifacts)
    if formats != sorted(FORMATS):
        problems.append(f"artifacts {formats}, want {sorted(FORMATS)}")
    for a in m.artifacts:
        path = folder / a.path
        if not path.exists():
            problems.append(f"{a.path} is missing")
            continue
        if a.sha256 and sha256_file(path) != a.sha256:
            problems.append(f"{a.path} does not match the sha256 in the manifest")
        if a.inputs and list(a.inputs[0].shape) != list(DEFAULT_SR_INPUT) and a.inputs[0].layout != "NHWC":
            problems.append(f"{a.path} takes {list(a.inputs[0].shape)}, want {list(DEFAULT_SR_INPUT)}")
        if not a.verified:
            problems.append(f"{a.path} verification: {a.verification.get('status')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekit.apps.camera.make_default_bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_BUNDLE_DIR, help="bundle folder (default: the shipped one)")
    parser.add_argument("--check", action="store_true", help="only compare the bundle with the shipped weights")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for p in problems:
            print(f"default bundle: {p}", file=sys.stderr)
        print("default bundle: ok" if not problems else "default bundle: regenerate it with "
              "`python -m edgekit.apps.camera.make_default_bundle`")
        return 1 if problems else 0

    def progress(ev) -> None:
        if ev.status in ("done", "failed"):
            print(f"  {ev.stage:<8} {ev.fmt or '':<7} {ev.status} {ev.message}", file=sys.stderr)

    out = build(args.out, progress)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1024:.0f} KB)")
    problems = check(out)
    for p in problems:
        print(f"default bundle: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
