"""``torch.export`` of a capture: the program with stable input/output names and, optionally,
the pre-processing folded in; an export failure explained in one line (the cause, the user's
file and line)."""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

from edgekit.converters.capture.captured import STAGE, Captured
from edgekit.converters.capture.onnx_source import import_onnx_module
from edgekit.converters.capture.user_code import user_location
from edgekit.converters.preprocess import FoldSpec, fold_module
from edgekit.converters.exporters import tool_output
from edgekit.errors import ConversionError, first_line

__all__ = ["export_program", "explain_export_error"]


class _NamedIO:
    """Factory of the wrapper that gives a module named inputs (keyword arguments) and a dict
    of named outputs, so ONNX, TFLite and CoreML all use the same tensor names."""

    @staticmethod
    def wrap(module: Any, input_names: list[str], output_names: list[str]) -> Any:
        import torch
        import torch.utils._pytree as pytree

        class NamedIO(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = module

            def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
                out = self.model(*[inputs[n] for n in input_names])
                return dict(zip(output_names, pytree.tree_leaves(out)))

        wrapper = NamedIO()
        wrapper.training = False  # not .eval(): an ExportedProgram's module refuses train()/eval()
        return wrapper


def export_program(cap: Captured, fold: FoldSpec | None = None, *, for_image_input: bool = False) -> tuple[Any, dict]:
    """``torch.export`` the captured module (with the pre-processing of ``fold`` prepended).

    Returns ``(exported_program, kwargs)`` where ``kwargs`` maps the input names to the example
    tensors the program was traced with (raw pixels 0..255 when folding). Untraceable models
    raise a :class:`ConversionError` naming the cause and the user's file and line.
    """
    import torch

    if cap.module is None:
        import_onnx_module(cap)
    module = cap.module
    inputs = cap.example_inputs
    if fold is not None:
        channels = int(inputs[0].shape[1])
        module = fold_module(module, fold, channels, for_image_input=for_image_input)
        g = torch.Generator().manual_seed(1)
        pixels = torch.randint(0, 256, tuple(inputs[0].shape), generator=g).to(torch.float32)
        if fold.input_layout == "NHWC" and not for_image_input:
            pixels = pixels.permute(0, 2, 3, 1).contiguous()
        inputs = (pixels,)
    wrapper = _NamedIO.wrap(module, cap.input_names, cap.output_names)
    kwargs = dict(zip(cap.input_names, inputs))
    try:
        # torch prints the partial graph of a failed trace to stderr: the one-line error says it better
        with _quiet_torch_logs(), tool_output():
            program = torch.export.export(wrapper, (), kwargs=kwargs, strict=False)
    except Exception as e:
        raise explain_export_error(e, cap) from None
    return program, kwargs


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    import logging

    names = ("torch._export", "torch.export", "torch.fx.experimental.symbolic_shapes", "torch._dynamo")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def explain_export_error(e: BaseException, cap: Captured) -> ConversionError:
    """One line for a ``torch.export`` failure: the cause in words, the user's file and line."""
    text = str(e)
    name = type(e).__name__
    where = user_location(e) or _location_in_message(text) or str(cap.source.get("ref", cap.name))
    if "data-dependent" in text or "GuardOnDataDependent" in name or "DataDependent" in name:
        cause = "data-dependent control flow (Python `if`/`while` or int() on a tensor's value)"
        hint = "make the branch independent of tensor values, or express it with torch.where / torch.cond"
    elif "fake tensor in the exported program constant" in text:
        cause, hint, at = _computed_weight(cap)
        where = at or where
    elif "Unsupported" in name or "not supported" in text.lower():
        cause = f"a construct torch.export does not support ({first_line(e)})"
        hint = "rewrite that line with tensor operations"
    else:
        cause = f"{name}: {first_line(e)}"
        hint = "make the model traceable by torch.export (see the PyTorch export docs); EDGEKIT_DEBUG=1 shows the trace"
    return ConversionError(STAGE, f"torch.export cannot trace the model: {cause}", where=where, hint=hint)


def _computed_weight(cap: Captured) -> tuple[str, str, str | None]:
    """Cause, hint and place for a tensor computed in ``forward`` outside what export traces
    (torch only names it ``lifted_tensor_0``): the parameters whose ``.data`` forward reads."""
    from edgekit.converters.capture.reparam import HOOKS, untraced_parameters

    fold = (f"fold it once before export in a no-argument `{HOOKS[0]}()` (or `{HOOKS[1]}()`) that stores the "
            "folded weight as a parameter (edgekit calls it on a copy), or compute it without `.data`")
    refused = cap.source.get("reparameterize_refused")
    if refused:  # the model has a fold, and capture did not use it: say why, that is what to fix
        fold = (f"{refused.removesuffix('; exported unfolded')}; make that fold keep the outputs, "
                "or compute the weight without `.data`")
    reads = untraced_parameters(cap.module, cap.example_inputs) if cap.module is not None else []
    if not reads:
        return ("forward builds a tensor torch.export cannot follow (a constant computed from the weights, e.g. "
                "through `.data`, `.numpy()` or `torch.tensor(...)`)", fold, None)
    names = ", ".join(n for n, _ in reads[:4]) + (f" and {len(reads) - 4} more" if len(reads) > 4 else "")
    return (f"forward computes a weight from `.data` of parameter(s) {names}, which torch.export cannot follow",
            fold, next((at for _, at in reads if at), None))


def _location_in_message(text: str) -> str | None:
    m = re.search(r'File "([^"]+)", line (\d+)', text)
    if m and "site-packages" not in m[1]:
        return f"{m[1]}:{m[2]}"
    return None
