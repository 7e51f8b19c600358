"""Exact alternative forms for ops a format's converter refuses (exporter-level lowerings).

Some ops of a perfectly ordinary program make one converter fail although the format can compute
the same function with other ops. An exporter calls :func:`lower` on a graph it owns (CoreML: the
decomposed copy of the program; TFLite: the unlifted module it hands to litert-torch) with its
format; every :class:`Form` of that format rewrites the nodes it matches, in place, into ops the
converter takes, and the exporter records what was rewritten in the artifact's ``passes``
(``forms.<id>(<count>)``). Each form is the same function up to float rounding; most are pure data
movement and exact to the bit.

=========================  ========  ================================================================
form                       formats   before → after (why)
=========================  ========  ================================================================
``drop_identity``          coreml    ``alias``/``detach``/``lift_fresh_copy``, and a view, reshape,
                                     squeeze, expand, slice or permute whose result is its input →
                                     the input (coremltools has no ``alias``; a full slice such as
                                     ``x[:, :]`` becomes one in the ATen program)
``pool_default_stride``    coreml    ``max_pool{1,2,3}d(x, k)`` / ``avg_pool{1,2,3}d(x, k)`` with the
                                     stride left out or ``[]`` → the stride written out as ``k``
                                     (PyTorch's default; coremltools reads a missing stride as an error)
``prelu_rank4``            coreml    ``prelu(x, α)`` on a tensor of rank 2, 3 or ≥ 5 with one α per
                                     channel → ``reshape(x, (N, C, rest, 1))`` → ``prelu`` → reshape
                                     back (Core ML's prelu takes per-channel α on rank 4 only; the
                                     channel stays axis 1, the same α meets the same elements)
``circular_pad``           coreml    ``pad(x, p, "circular")`` → per axis ``cat([x[-p_l:], x,
                                     x[:p_r]])`` (Core ML pads constant/reflect/replicate only)
``conv_padding_string``    tflite    ``conv1d(x, w, b, s, "same"|"valid", d)`` → explicit padding:
                                     ``d·(k−1)//2`` each side and, when ``d·(k−1)`` is odd, one more
                                     column on the right by a zero pad, as PyTorch computes "same"
                                     (litert-torch has no lowering for ``conv1d.padding``)
``bicubic_matmul``         coreml    ``upsample_bicubic2d`` (any size or factor, either align_corners)
                                     → ``(H_out × H_in) @ x @ (W_in × W_out)`` with the weights read
                                     off PyTorch's own kernel in float64 (Core ML has no bicubic
                                     resize; an axis left unchanged skips its matmul)
``nearest_exact_integer``  coreml    ``nearest-exact`` resize whose pixels are the ones plain
                                     ``nearest`` picks (integer factors; asked of both kernels) →
                                     ``upsample_nearest``
``avg_pool_divisor``       onnx,     ``avg_pool(x, k, divisor_override=d)`` where every window counts
                           coreml    the same elements → ``avg_pool(x, k) × (prod(k) / d)``
``negative_pad``           coreml    constant padding by negative amounts → slice (the crop), then a
                                     constant pad by the positive amounts
``conv_transpose_output_padding``
                           tflite    ``conv_transpose(x, w, padding=p, output_padding=o)``, ``o ≤ p``
                                     → the whole transposed conv, sliced to ``[p, p + out)``
``nearest_fractional``     tflite    ``upsample_nearest{1,2}d`` to a size that is not an integer
                                     multiple → ``index_select`` of the rows (and columns) PyTorch
                                     picks, computed once by PyTorch's own nearest kernel (LiteRT's
                                     RESIZE_NEAREST_NEIGHBOR uses half-pixel centres there, which
                                     picks other pixels; integer factors stay a resize, where both agree)
=========================  ========  ================================================================

Example::

    >>> program = request.program.run_decompositions({})          # doctest: +SKIP
    >>> applied = lower(program.graph_module, "coreml")           # doctest: +SKIP
    >>> applied
    ['forms.drop_identity(2)', 'forms.pool_default_stride(1)']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["Form", "FORMS", "lower", "matches", "form_ids"]

aten = torch.ops.aten


class _Emit:
    """Writes new nodes in front of ``before`` with their ``meta["val"]`` (computed on the inputs'
    fake values, the same way export records them), so the graph stays a valid export graph."""

    def __init__(self, gm: torch.fx.GraphModule, before: torch.fx.Node):
        self.gm, self.graph, self.before = gm, gm.graph, before

    def __call__(self, target: Any, *args: Any) -> torch.fx.Node:
        vals = torch.utils._pytree.tree_map_only(torch.fx.Node, lambda n: n.meta["val"], args)
        with torch.no_grad():
            val = target(*vals)
        with self.graph.inserting_before(self.before):
            node = self.graph.call_function(target, tuple(args))
        node.meta.update({k: v for k, v in self.before.meta.items() if k in ("stack_trace", "nn_module_stack",
                                                                             "source_fn_stack")})
        node.meta["val"] = val
        return node

    def const(self, name: str, value: torch.Tensor) -> torch.fx.Node:
        """A constant of the module (a buffer and a ``get_attr``): only for unlifted modules."""
        from torch._guards import detect_fake_mode

        target = f"_edgekit_form_{name}"
        i = 0
        while hasattr(self.gm, f"{target}{i}"):
            i += 1
        target = f"{target}{i}"
        self.gm.register_buffer(target, value)
        with self.graph.inserting_before(self.before):
            node = self.graph.get_attr(target)
        mode = detect_fake_mode([self.before.args[0].meta["val"]])
        node.meta["val"] = mode.from_tensor(value) if mode is not None else value
        return node


def _become(node: torch.fx.Node, target: Any, *args: Any) -> None:
    """Make ``node`` compute ``target(*args)`` (the last op of its new form, same value): it keeps
    its name and place, so a program's output signature still names it."""
    node.target, node.args, node.kwargs = target, tuple(args), {}


def _shape(node: Any) -> tuple[int, ...] | None:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    if not isinstance(val, torch.Tensor) or not all(isinstance(d, int) for d in val.shape):
        return None
    return tuple(int(d) for d in val.shape)


def _arg(node: torch.fx.Node, i: int, name: str, default: Any) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


# -- drop_identity --------------------------------------------------------------------------------

_ALWAYS_IDENTITY = {aten.alias.default, aten.detach.default, aten.lift_fresh_copy.default,
                    getattr(aten, "alias_copy", aten.alias).default, getattr(aten, "detach_copy", aten.detach).default}
_SAME_SHAPE_IDENTITY = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.expand.default,
                        aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.flatten.using_ints,
                        aten.unflatten.int, getattr(aten, "view_copy", aten.view).default,
                        getattr(aten, "expand_copy", aten.expand).default}


def _identity(node: torch.fx.Node) -> bool:
    if not node.args or not isinstance(node.args[0], torch.fx.Node):
        return False
    src, out = _shape(node.args[0]), _shape(node)
    if node.target in _ALWAYS_IDENTITY:
        return src is not None and src == out
    if src is None or src != out or node.args[0].meta["val"].dtype != node.meta["val"].dtype:
        return False
    if node.target in _SAME_SHAPE_IDENTITY:
        return True  # a reshape (or broadcast) of a tensor to its own shape reads every element in place
    if node.target == aten.permute.default:
        return list(node.args[1]) == list(range(len(src)))
    if node.target == aten.transpose.int:
        a, b = (int(d) % max(len(src), 1) for d in node.args[1:3])
        return a == b or (src[a] == 1 and src[b] == 1)
    if node.target == aten.slice.Tensor:
        start, step = _arg(node, 2, "start", None), _arg(node, 4, "step", 1)
        return (start in (None, 0)) and step == 1  # the shapes agree, so the slice ends at the end
    return False


def _drop_identity(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    src = node.args[0]
    if any(u.op == "output" for u in node.users):
        # an output keeps its node (and name): a copy, which coremltools converts to nothing
        node.target, node.args, node.kwargs = aten.clone.default, (src,), {}
        return
    node.replace_all_uses_with(src)
    gm.graph.erase_node(node)


# -- pool_default_stride --------------------------------------------------------------------------

_POOLS = {aten.max_pool1d.default, aten.max_pool2d.default, aten.max_pool3d.default,
          aten.avg_pool1d.default, aten.avg_pool2d.default, aten.avg_pool3d.default,
          aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default}


def _pool_without_stride(node: torch.fx.Node) -> bool:
    if node.target not in _POOLS:
        return False
    stride = _arg(node, 2, "stride", None)
    return stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)


def _pool_default_stride(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    kernel = list(node.args[1]) if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
    args = list(node.args)
    kwargs = dict(node.kwargs)
    kwargs.pop("stride", None)
    if len(args) > 2:
        args[2] = kernel
    else:
        args.append(kernel)
    node.args, node.kwargs = tuple(args), kwargs


# -- prelu_rank4 ----------------------------------------------------------------------------------


def _prelu_off_rank4(node: torch.fx.Node) -> bool:
    if node.target != aten.prelu.default:
        return False
    x, w = _shape(node.args[0]), _shape(node.args[1])
    return x is not None and w is not None and len(x) >= 2 and len(x) != 4 and math.prod(w) > 1


def _prelu_rank4(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    x, w = node.args[0], node.args[1]
    shape = _shape(x)
    emit = _Emit(gm, node)
    x4 = emit(aten.view.default, x, [shape[0], shape[1], math.prod(shape[2:]), 1])
    y4 = emit(aten.prelu.default, x4, w)
    _become(node, aten.view.default, y4, list(shape))


# -- circular_pad ---------------------------------------------------------------------------------


def _circular(node: torch.fx.Node) -> bool:
    if node.target != aten.pad.default or _arg(node, 2, "mode", "constant") != "circular":
        return False
    shape, pad = _shape(node.args[0]), list(node.args[1])
    if shape is None or len(pad) % 2 or len(pad) // 2 > len(shape):
        return False
    return all(0 <= p <= shape[len(shape) - 1 - i // 2] for i, p in enumerate(pad))


def _circular_pad(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    x, pad = node.args[0], list(node.args[1])
    emit = _Emit(gm, node)
    rank = len(_shape(x))
    # (axis, left, right) for every padded axis; ``pad`` lists the last axis first
    todo = [(rank - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2) if pad[2 * i] or pad[2 * i + 1]]
    if not todo:
        _become(node, aten.clone.default, x)  # nothing to pad: a copy, which coremltools converts to nothing
        return
    y = x
    for k, (dim, left, right) in enumerate(todo):
        size = _shape(y)[dim]
        parts = ([emit(aten.slice.Tensor, y, dim, size - left, size, 1)] if left else []) + [y] + \
                ([emit(aten.slice.Tensor, y, dim, 0, right, 1)] if right else [])
        if k == len(todo) - 1:
            _become(node, aten.cat.default, parts, dim)
        else:
            y = emit(aten.cat.default, parts, dim)


# -- conv_padding_string --------------------------------------------------------------------------


def _conv1d_string(node: torch.fx.Node) -> bool:
    return node.target == aten.conv1d.padding and _shape(node.args[0]) is not None and _shape(node.args[1]) is not None


def _conv_padding_string(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    x, w = node.args[0], node.args[1]
    bias = _arg(node, 2, "bias", None)
    stride = list(_arg(node, 3, "stride", [1]))
    mode = _arg(node, 4, "padding", "valid")
    dilation = list(_arg(node, 5, "dilation", [1]))
    groups = _arg(node, 6, "groups", 1)
    emit = _Emit(gm, node)
    k = _shape(w)[-1]
    total = dilation[0] * (k - 1) if mode == "same" else 0
    if total % 2:  # PyTorch puts the odd column on the right
        x = emit(aten.constant_pad_nd.default, x, [0, 1], 0.0)
    _become(node, aten.conv1d.default, x, w, bias, stride, [total // 2], dilation, groups)


# -- nearest_fractional ---------------------------------------------------------------------------

_NEAREST = {aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default,
            aten.upsample_nearest1d.vec, aten.upsample_nearest1d.default}


def _nearest_fractional(node: torch.fx.Node) -> bool:
    if node.target not in _NEAREST:
        return False
    src, out = _shape(node.args[0]), _shape(node)
    if src is None or out is None:
        return False
    return any(o % i for i, o in zip(src[2:], out[2:]))


def _picked(node: torch.fx.Node, axis: int, size: int) -> torch.Tensor:
    """The source positions PyTorch's nearest kernel reads along spatial ``axis``: the same op, on
    the positions themselves (one line of them; the other spatial axes of size 1 keep size 1)."""
    spatial = len(_shape(node)) - 2
    line = [1] * spatial
    line[axis] = size
    pos = torch.arange(size, dtype=torch.float32).reshape(1, 1, *line)
    out = [1] * spatial
    out[axis] = _shape(node)[2 + axis]
    if node.target in (aten.upsample_nearest2d.vec, aten.upsample_nearest1d.vec):
        scales = node.args[2] if len(node.args) > 2 else node.kwargs.get("scale_factors")
        if scales is not None:  # the kernel uses 1/scale, not in/out: keep the user's factors
            picked = node.target(pos, None, [s if a == axis else 1.0 for a, s in enumerate(scales)])
        else:
            picked = node.target(pos, out, None)
    else:
        scales = list(node.args[2:]) + [None] * (spatial - len(node.args[2:]))
        picked = node.target(pos, out, *[s if a == axis else None for a, s in enumerate(scales)])
    return picked.reshape(-1).to(torch.int64)


def _nearest_gather(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    x = node.args[0]
    src, out = _shape(x), _shape(node)
    emit = _Emit(gm, node)
    axes = [a for a, (i, o) in enumerate(zip(src[2:], out[2:])) if o != i]
    y = x
    for axis in axes:
        idx = emit.const(f"nearest_{axis}", _picked(node, axis, src[2 + axis]))
        if axis == axes[-1]:
            _become(node, aten.index_select.default, y, 2 + axis, idx)
        else:
            y = emit(aten.index_select.default, y, 2 + axis, idx)


# -- bicubic_matmul ------------------------------------------------------------------------------

_BICUBIC = {aten.upsample_bicubic2d.vec, aten.upsample_bicubic2d.default}


def _bicubic(node: torch.fx.Node) -> bool:
    if node.target not in _BICUBIC:
        return False
    src, out = _shape(node.args[0]), _shape(node)
    return src is not None and out is not None and len(src) == 4 and node.meta["val"].is_floating_point()


def _bicubic_matrix(node: torch.fx.Node, axis: int) -> torch.Tensor:
    """The ``(out, in)`` weights of the bicubic resize along spatial ``axis`` (0: H, 1: W), read
    off PyTorch's own kernel run in float64 on the unit vectors (the other axis has size 1, which
    the kernel maps to itself: its cubic weights at offset 0 are ``(0, 1, 0, 0)``)."""
    src, out = _shape(node.args[0]), _shape(node)
    n = src[2 + axis]
    eye = torch.eye(n, dtype=torch.float64)
    basis = eye.reshape(n, 1, n, 1) if axis == 0 else eye.reshape(n, 1, 1, n)
    align = bool(_arg(node, 2, "align_corners", False))
    sizes = [out[2], 1] if axis == 0 else [1, out[3]]
    if node.target == aten.upsample_bicubic2d.vec:
        factors = _arg(node, 3, "scale_factors", None)
        if factors is not None:  # the kernel maps coordinates by 1/factor, not in/out: keep the user's factor
            y = node.target(basis, None, align, [factors[0], 1.0] if axis == 0 else [1.0, factors[1]])
        else:
            y = node.target(basis, sizes, align, None)
    else:
        scale = _arg(node, 3 + axis, "scales_h" if axis == 0 else "scales_w", None)
        y = node.target(basis, sizes, align, *([scale, None] if axis == 0 else [None, scale]))
    return y.reshape(n, -1).T.contiguous()  # y[i, ..., o] is input position i's weight in output position o


def _bicubic_matmul(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    x = node.args[0]
    dtype = node.meta["val"].dtype
    emit = _Emit(gm, node)
    rows, cols = _bicubic_matrix(node, 0), _bicubic_matrix(node, 1)
    steps = []
    if not (rows.shape[0] == rows.shape[1] and torch.equal(rows, torch.eye(rows.shape[0], dtype=rows.dtype))):
        steps.append(("rows", rows.to(dtype), True))
    if not (cols.shape[0] == cols.shape[1] and torch.equal(cols, torch.eye(cols.shape[0], dtype=cols.dtype))):
        steps.append(("cols", cols.T.contiguous().to(dtype), False))
    if not steps:
        _become(node, aten.clone.default, x)
        return
    y = x
    for k, (name, matrix, left) in enumerate(steps):
        const = emit.const(f"bicubic_{name}", matrix)
        args = (const, y) if left else (y, const)  # (Ho, Hi) @ (N, C, Hi, W); (N, C, H, Wi) @ (Wi, Wo)
        if k == len(steps) - 1:
            _become(node, aten.matmul.default, *args)
        else:
            y = emit(aten.matmul.default, *args)


# -- nearest_exact_integer -----------------------------------------------------------------------

_NEAREST_EXACT = {getattr(aten, "_upsample_nearest_exact2d").vec: aten.upsample_nearest2d.vec,
                  getattr(aten, "_upsample_nearest_exact1d").vec: aten.upsample_nearest1d.vec}


def _exact_is_nearest(node: torch.fx.Node) -> bool:
    """True when ``nearest-exact`` picks the very pixels plain ``nearest`` picks (integer factors),
    asked of PyTorch's own kernels on the positions themselves."""
    if node.target not in _NEAREST_EXACT:
        return False
    src, out = _shape(node.args[0]), _shape(node)
    if src is None or out is None:
        return False
    twin = _NEAREST_EXACT[node.target]
    for axis, size in enumerate(src[2:]):
        spatial = len(src) - 2
        line = [size if a == axis else 1 for a in range(spatial)]
        pos = torch.arange(size, dtype=torch.float32).reshape(1, 1, *line)
        sizes = [out[2 + a] if a == axis else 1 for a in range(spatial)]
        scales = node.args[2] if len(node.args) > 2 else None
        scales = None if scales is None else [s if a == axis else 1.0 for a, s in enumerate(scales)]
        size_arg = None if scales is not None else sizes
        if not torch.equal(node.target(pos, size_arg, scales), twin(pos, size_arg, scales)):
            return False
    return True


def _nearest_exact_integer(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    _become(node, _NEAREST_EXACT[node.target], *node.args)


# -- avg_pool_divisor -----------------------------------------------------------------------------

_AVG = {aten.avg_pool1d.default: 1, aten.avg_pool2d.default: 2, aten.avg_pool3d.default: 3}


def _pool_geometry(node: torch.fx.Node) -> tuple[list[int], list[int], list[int], bool, bool]:
    spatial = _AVG.get(node.target, 2)
    expand = lambda v, d: [int(v)] * spatial if isinstance(v, int) else (list(v) or d)  # noqa: E731
    kernel = expand(node.args[1], None)
    stride = expand(_arg(node, 2, "stride", []), kernel)
    padding = expand(_arg(node, 3, "padding", 0), [0] * spatial)
    return kernel, stride, padding, bool(_arg(node, 4, "ceil_mode", False)), bool(_arg(node, 5, "count_include_pad", True))


def _divisor_uniform(node: torch.fx.Node) -> bool:
    """An average pool with ``divisor_override`` whose windows all count the same elements (no
    padding left out of the count, no ceil-mode window hanging over the edge)."""
    if node.target not in _AVG or node.target == aten.avg_pool1d.default or _arg(node, 6, "divisor_override", None) is None:
        return False
    src = _shape(node.args[0])
    if src is None:
        return False
    kernel, stride, padding, ceil, include_pad = _pool_geometry(node)
    if any(padding) and not include_pad:
        return False
    spatial = src[-len(kernel):]
    return not ceil or all((i + 2 * p - k) % s == 0 for i, p, k, s in zip(spatial, padding, kernel, stride))


def _avg_pool_divisor(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    kernel, stride, padding, ceil, include_pad = _pool_geometry(node)
    emit = _Emit(gm, node)
    mean = emit(node.target, node.args[0], kernel, stride, padding, ceil, include_pad, None)
    _become(node, aten.mul.Tensor, mean, math.prod(kernel) / float(_arg(node, 6, "divisor_override", None)))


# -- negative_pad ---------------------------------------------------------------------------------


def _negative_pad(node: torch.fx.Node) -> bool:
    if node.target not in (aten.pad.default, aten.constant_pad_nd.default) or _shape(node.args[0]) is None:
        return False
    if node.target == aten.pad.default and _arg(node, 2, "mode", "constant") != "constant":
        return False
    return any(int(p) < 0 for p in node.args[1])


def _crop_then_pad(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    x, pad = node.args[0], [int(p) for p in node.args[1]]
    value = _arg(node, 2, "value", None) if node.target == aten.constant_pad_nd.default else _arg(node, 3, "value", None)
    emit = _Emit(gm, node)
    rank = len(_shape(x))
    for i in range(len(pad) // 2):  # a negative amount crops that side
        dim, left, right = rank - 1 - i, pad[2 * i], pad[2 * i + 1]
        if left < 0 or right < 0:
            size = _shape(x)[dim]
            x = emit(aten.slice.Tensor, x, dim, max(-left, 0), size - max(-right, 0), 1)
    rest = [max(p, 0) for p in pad]
    if any(rest):
        _become(node, aten.constant_pad_nd.default, x, rest, 0.0 if value is None else value)
    else:
        _become(node, aten.clone.default, x)


# -- conv_transpose_output_padding ----------------------------------------------------------------

_CONV_T = {aten.conv_transpose1d.default: 1, aten.conv_transpose2d.input: 2}


def _output_padding(node: torch.fx.Node) -> bool:
    if node.target not in _CONV_T or _shape(node.args[0]) is None or _shape(node) is None:
        return False
    spatial = _CONV_T[node.target]
    padding = _arg(node, 4, "padding", [0] * spatial)
    out_pad = _arg(node, 5, "output_padding", [0] * spatial)
    padding = [padding] * spatial if isinstance(padding, int) else list(padding)
    out_pad = [out_pad] * spatial if isinstance(out_pad, int) else list(out_pad)
    return any(out_pad) and all(o <= p for o, p in zip(out_pad, padding))


def _full_then_slice(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    spatial = _CONV_T[node.target]
    x, w = node.args[0], node.args[1]
    bias, stride = _arg(node, 2, "bias", None), _arg(node, 3, "stride", [1] * spatial)
    padding = _arg(node, 4, "padding", [0] * spatial)
    padding = [padding] * spatial if isinstance(padding, int) else list(padding)
    groups, dilation = _arg(node, 6, "groups", 1), _arg(node, 7, "dilation", [1] * spatial)
    emit = _Emit(gm, node)
    # the whole transposed convolution; the layer's output is the window [p, p + out) of it
    y = emit(node.target, x, w, bias, stride, [0] * spatial, [0] * spatial, groups, dilation)
    out = _shape(node)
    dims = [d for d in range(spatial) if padding[d] or _shape(y)[2 + d] != out[2 + d]]
    for d in dims:
        args = (y, 2 + d, padding[d], padding[d] + out[2 + d], 1)
        if d == dims[-1]:
            _become(node, aten.slice.Tensor, *args)
        else:
            y = emit(aten.slice.Tensor, *args)


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """One exact alternative form: the nodes it takes (``match``) and how it rewrites one in place
    (``apply``); ``formats``: the exporters that use it; ``what``: before -> after, in words (ASCII, like the
    ``forms.<id>(<count>)`` labels the exporters record)."""

    id: str
    formats: tuple[str, ...]
    what: str
    match: Callable[[torch.fx.Node], bool]
    apply: Callable[[torch.fx.GraphModule, torch.fx.Node], None]


FORMS: tuple[Form, ...] = (
    Form("drop_identity", ("coreml",), "an op whose result is its input (alias, detach, full view/slice) -> the input",
         _identity, _drop_identity),
    Form("pool_default_stride", ("coreml",), "pooling with PyTorch's default stride -> the stride written out (= kernel)",
         _pool_without_stride, _pool_default_stride),
    Form("prelu_rank4", ("coreml",), "per-channel PReLU on rank != 4 -> reshape to (N, C, rest, 1), PReLU, reshape back",
         _prelu_off_rank4, _prelu_rank4),
    Form("circular_pad", ("coreml",), "circular padding -> concatenation of the wrapped slices",
         _circular, _circular_pad),
    Form("bicubic_matmul", ("coreml",), "bicubic resize -> (H_out x H_in) @ x @ (W_in x W_out) with the "
         "kernel's own weights", _bicubic, _bicubic_matmul),
    Form("nearest_exact_integer", ("coreml",), "nearest-exact resize that picks the pixels plain nearest picks "
         "(integer factors) -> nearest", _exact_is_nearest, _nearest_exact_integer),
    Form("avg_pool_divisor", ("onnx", "coreml"), "average pool with divisor_override (full windows) -> average pool "
         "x (kernel size / divisor)", _divisor_uniform, _avg_pool_divisor),
    Form("negative_pad", ("coreml",), "constant padding by negative amounts -> slice (crop), then pad the rest",
         _negative_pad, _crop_then_pad),
    Form("conv_transpose_output_padding", ("tflite",), "transposed conv with output_padding -> the whole transposed "
         "conv, sliced to the layer's output window", _output_padding, _full_then_slice),
    Form("conv_padding_string", ("tflite",), "conv1d with padding='same'/'valid' -> explicit padding",
         _conv1d_string, _conv_padding_string),
    Form("nearest_fractional", ("tflite",), "nearest resize by a non-integer factor -> index_select of the rows "
         "and columns PyTorch picks", _nearest_fractional, _nearest_gather),
)


def form_ids(fmt: str) -> list[str]:
    """The ids of the forms an exporter of ``fmt`` applies."""
    return [f.id for f in FORMS if fmt in f.formats]


def matches(gm: torch.fx.GraphModule, fmt: str) -> dict[str, list[str]]:
    """{form id: names of the nodes it would rewrite} for ``fmt`` (nothing is changed)."""
    out: dict[str, list[str]] = {}
    for form in FORMS:
        if fmt in form.formats:
            names = [n.name for n in gm.graph.nodes if n.op == "call_function" and form.match(n)]
            if names:
                out[form.id] = names
    return out


def lower(gm: torch.fx.GraphModule, fmt: str) -> list[str]:
    """Rewrite, in place, every node of ``gm`` that a form of ``fmt`` matches; return what was
    applied as ``forms.<id>(<count>)`` entries (the manifest's ``passes``). ``gm`` must be a graph
    the caller owns (a decomposed copy, an unlifted module), never the captured program."""
    applied = []
    for form in FORMS:
        if fmt not in form.formats:
            continue
        nodes = [n for n in gm.graph.nodes if n.op == "call_function" and form.match(n)]
        for node in nodes:
            form.apply(gm, node)
        if nodes:
            applied.append(f"forms.{form.id}({len(nodes)})")
    if applied:
        gm.graph.lint()
        gm.recompile()
    return applied
