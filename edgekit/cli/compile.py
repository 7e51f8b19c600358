"""`edgekit compile`: a shell over :func:`edgekit.compiler.compile` (Arm's Vela for Ethos-U).

Prints what Vela reports (ops on the NPU and on the CPU with Vela's reasons, cycles, estimated
inference time, memory, weights) and where the compiled artifact went; ``--json`` prints it as
JSON. Exit codes: 0 compiled, 1 a model or Vela error, 2 a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgekit.cli._common import handle_errors, out_console, print_json


def register(app: typer.Typer) -> None:
    @app.command("compile")
    @handle_errors
    def compile_(
        model: Path = typer.Argument(..., help="An int8 .tflite file, or a bundle folder with an int8 TFLite artifact."),
        target: str = typer.Option(..., "--target", "-t", help="The NPU. Ethos-U (Vela): ethos-u55-128, "
                                   "ethos-u55-256, ethos-u65-256, ethos-u85-256 (or another of Vela's accelerator "
                                   "configurations). Rockchip (rknn-toolkit2, a bundle's ONNX): rk3588, rk3576, rk3568, "
                                   "rk3566, rk3562."),
        system_config: Optional[str] = typer.Option(None, "--system-config", help="A system configuration of "
                                                    "Vela's Arm/vela.ini (default: Vela's for the accelerator)."),
        memory_mode: Optional[str] = typer.Option(None, "--memory-mode", help="A memory mode of Vela's Arm/vela.ini "
                                                  "(default: Vela's for the accelerator)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write a new bundle here (default: into the "
                                           "bundle given; a bare .tflite is only reported)."),
        force: bool = typer.Option(False, "--force", help="Replace an edgekit bundle at --out."),
        rknn_python: Optional[Path] = typer.Option(None, "--rknn-python", help="Rockchip targets: the Python that "
                                                   "has rknn-toolkit2 (default: $EDGEKIT_RKNN_PYTHON; see edgekit doctor)."),
        json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Compile for an NPU with its vendor's compiler; record ops, cycles, memory and agreement.

        Arm Ethos-U: an int8 model, with Vela. Rockchip: a bundle's ONNX, with rknn-toolkit2 in its
        own interpreter, verified on the toolkit's simulator.

        Example: edgekit compile sr/ --target ethos-u55-256
        """
        from edgekit.compiler import compile as run_compile, describe

        result = run_compile(model, target, system_config=system_config, memory_mode=memory_mode, out=out,
                             force=force, rknn_python=rknn_python)
        if json_out:
            print_json(result.to_dict())
            return
        con = out_console()
        for line in describe(result.report.to_dict()):
            con.print(line, markup=False)
        for note in result.notes:
            con.print(f"note: {note}", markup=False)
        if result.artifact is not None:
            con.print(f"wrote {result.bundle / result.artifact.path} (recorded in {result.bundle / 'edgekit.json'})",
                      markup=False)
        else:
            con.print("nothing written: pass --out DIR to write a bundle with the compiled model", markup=False)
