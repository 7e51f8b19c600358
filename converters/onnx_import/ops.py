"""The op table: one small converter per ONNX op type, registered with ``@op("Name")``.

A converter takes the :class:`~.builder.Builder` and the node's inputs (``None`` for an
omitted optional input) and returns the node's output Value(s). It reads attributes with
``g.attr``, shape-like inputs with ``g.ints`` (they must be constants: the importer targets
static-shape export) and emits PyTorch ops with ``g.call``. Semantics follow the ONNX
operator spec (https://onnx.ai/onnx/operators/), including the attribute-to-input moves
across opsets 7–21 (Slice 10, Clip/Pad 11, Squeeze/Unsqueeze/Split/ReduceSum 13, other
Reduce* 18). Resize/Upsample live in :mod:`.resize`, pooling in :mod:`.pool`; the table and the
helpers they share in :mod:`.table`.
"""

from __future__ import annotations

import math
import operator
from typing import Callable

import torch
import torch.nn.functional as F

from edgekit.converters.onnx_import.builder import Builder, Const, Dyn, NodeError, OpFn, Value, prod
from edgekit.converters.onnx_import.table import axis_of, onnx_pads, op, torch_pad_list


# ---------------------------------------------------------------------------- elementwise

_UNARY: dict[str, Callable] = {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf, "Exp": torch.exp,
    "Log": torch.log, "Sqrt": torch.sqrt, "Reciprocal": torch.reciprocal, "Neg": torch.neg, "Abs": torch.abs,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Sign": torch.sign, "Sin": torch.sin,
    "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin, "Acos": torch.acos, "Atan": torch.atan,
    "Sinh": torch.sinh, "Cosh": torch.cosh, "Softplus": F.softplus, "Softsign": F.softsign,
    "Not": torch.logical_not, "Mish": F.mish, "HardSwish": F.hardswish, "IsNaN": torch.isnan,
}


def _unary(fn: Callable) -> OpFn:
    def convert(g: Builder, x: Value) -> Value:
        return g.call(fn, x)

    return convert


for _name, _fn in _UNARY.items():
    op(_name)(_unary(_fn))


@op("Identity")
def identity(g: Builder, x: Value) -> Value:
    return x


@op("Dropout")
def dropout(g: Builder, x: Value, ratio: Value | None = None, training: Value | None = None) -> Value:
    # Inference-mode dropout is the identity; its mask output (rarely used) is refused by the builder.
    if training is not None and (not g.is_const(training) or bool(g.scalar(training, "training_mode"))):
        raise NodeError("Dropout in training mode cannot be imported", hint="export the model in eval mode")
    return x


@op("LeakyRelu")
def leaky_relu(g: Builder, x: Value) -> Value:
    return g.call(F.leaky_relu, x, float(g.attr("alpha", 0.01)))


@op("Elu")
def elu(g: Builder, x: Value) -> Value:
    return g.call(F.elu, x, float(g.attr("alpha", 1.0)))


@op("Celu")
def celu(g: Builder, x: Value) -> Value:
    return g.call(F.celu, x, float(g.attr("alpha", 1.0)))


@op("Selu")
def selu(g: Builder, x: Value) -> Value:
    alpha, gamma = float(g.attr("alpha", 1.67326319217681884765625)), float(g.attr("gamma", 1.05070102214813232421875))
    if math.isclose(alpha, 1.6732632423543772, rel_tol=1e-6) and math.isclose(gamma, 1.0507009873554805, rel_tol=1e-6):
        return g.call(F.selu, x)
    return g.call(operator.mul, g.call(F.elu, x, alpha), gamma)


@op("ThresholdedRelu")
def thresholded_relu(g: Builder, x: Value) -> Value:
    return g.call(F.threshold, x, float(g.attr("alpha", 1.0)), 0.0)


@op("HardSigmoid")
def hard_sigmoid(g: Builder, x: Value) -> Value:
    alpha, beta = float(g.attr("alpha", 0.2)), float(g.attr("beta", 0.5))
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return g.call(F.hardsigmoid, x)
    return g.call(torch.clamp, g.call(operator.add, g.call(operator.mul, x, alpha), beta), 0.0, 1.0)


@op("Gelu")
def gelu(g: Builder, x: Value) -> Value:
    approx = g.attr("approximate", "none")
    if approx not in ("none", "tanh"):
        raise NodeError(f"approximate={approx!r} is not an ONNX value")
    return g.call(F.gelu, x, approximate=approx)


@op("PRelu")
def prelu(g: Builder, x: Value, slope: Value) -> Value:
    # F.prelu takes one slope per channel (dim 1) or one for all; ONNX broadcasts slope to x.
    if isinstance(slope, Const) and x.rank >= 2:
        s = slope.value
        aligned = (1,) * (x.rank - s.dim()) + tuple(s.shape)
        if s.numel() == 1:
            return g.call(F.prelu, x, Const(s.reshape(1).to(x.dtype), slope.name))
        if len(aligned) == x.rank and aligned[1] == x.shape[1] and prod(aligned) == x.shape[1]:
            return g.call(F.prelu, x, Const(s.reshape(-1).to(x.dtype), slope.name))
    return g.call(torch.where, g.call(torch.ge, x, 0), x, g.call(operator.mul, x, slope))


@op("Clip")
def clip(g: Builder, x: Value, lo: Value | None = None, hi: Value | None = None) -> Value:
    if g.opset < 11:
        lo_v, hi_v = g.attr("min", None), g.attr("max", None)
        lo_v = None if lo_v is None or lo_v <= -3.4e38 else float(lo_v)
        hi_v = None if hi_v is None or hi_v >= 3.4e38 else float(hi_v)
    elif (lo is not None and not g.is_const(lo)) or (hi is not None and not g.is_const(hi)):
        return g.call(torch.clamp, x, lo, hi)  # run-time bounds: tensors both
    else:
        lo_v = None if lo is None else g.scalar(lo, "min")
        hi_v = None if hi is None else g.scalar(hi, "max")
    if lo_v is None and hi_v is None:
        return x
    if x.dtype.is_floating_point and lo_v == 0 and hi_v == 6:
        return g.call(F.relu6, x)
    if x.dtype.is_floating_point and lo_v == 0 and hi_v is None:
        return g.call(F.relu, x)
    if not x.dtype.is_floating_point:
        lo_v = None if lo_v is None else int(lo_v)
        hi_v = None if hi_v is None else int(hi_v)
    return g.call(torch.clamp, x, lo_v, hi_v)


def _operands(g: Builder, a: Value, b: Value) -> tuple:
    """``a, b`` with a one-element constant replaced by a Python number (cleaner graphs)."""
    if isinstance(a, Dyn) and isinstance(b, Const):
        s = g.python_scalar(b, a)
        return a, (b if s is None else s)
    if isinstance(b, Dyn) and isinstance(a, Const):
        s = g.python_scalar(a, b)
        return (a if s is None else s), b
    return a, b


def _linear_bias_fusion(g: Builder, a: Value, b: Value) -> Value | None:
    """``MatMul(x, W) + bias`` → one ``F.linear(x, W.T, bias)`` when the MatMul result has no
    other consumer (what torch.onnx emits for ``nn.Linear`` on 3-D inputs)."""
    for i, (y, bias) in enumerate(((a, b), (b, a))):
        if not (isinstance(y, Dyn) and isinstance(bias, Const)):
            continue
        n = y.node
        if n.target is not F.linear or len(n.args) < 3 or n.args[2] is not None:
            continue
        if g.uses[g.node.input[i]] != 1 or bias.rank > y.rank or bias.dtype != y.dtype:
            continue
        out = y.shape[-1]
        if bias.value.numel() != out or (bias.rank and bias.shape[-1] != out):
            continue
        x_node, w_node = n.args[0], n.args[1]
        fused = g.graph.call_function(F.linear, (x_node, w_node, g.fx_node(Const(bias.value.reshape(out), bias.name))))
        g._tag(fused)
        return Dyn(fused, y.meta)
    return None


@op("Add")
def add(g: Builder, a: Value, b: Value) -> Value:
    fused = _linear_bias_fusion(g, a, b)
    if fused is not None:
        return fused
    return g.call(operator.add, *_operands(g, a, b))


@op("Sub")
def sub(g: Builder, a: Value, b: Value) -> Value:
    return g.call(operator.sub, *_operands(g, a, b))


@op("Mul")
def mul(g: Builder, a: Value, b: Value) -> Value:
    return g.call(operator.mul, *_operands(g, a, b))


@op("Div")
def div(g: Builder, a: Value, b: Value) -> Value:
    if a.dtype.is_floating_point:
        return g.call(operator.truediv, *_operands(g, a, b))
    return g.call(torch.div, a, b, rounding_mode="trunc")  # ONNX integer division truncates


@op("Pow")
def pow_(g: Builder, a: Value, b: Value) -> Value:
    y = g.call(torch.pow, *_operands(g, a, b))
    return y if y.dtype == a.dtype else g.method("to", y, a.dtype)


@op("Mod")
def mod(g: Builder, a: Value, b: Value) -> Value:
    return g.call(torch.fmod if g.attr("fmod", 0) else torch.remainder, a, b)


_COMPARE = {"Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt, "GreaterOrEqual": torch.ge,
            "LessOrEqual": torch.le, "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor}


def _compare(fn: Callable) -> OpFn:
    def convert(g: Builder, a: Value, b: Value) -> Value:
        return g.call(fn, a, b)

    return convert


for _name, _fn in _COMPARE.items():
    op(_name)(_compare(_fn))


def _variadic(fn: Callable, mean: bool = False) -> OpFn:
    def convert(g: Builder, *xs: Value) -> Value:
        y = xs[0]
        for x in xs[1:]:
            y = g.call(fn, y, x)
        return g.call(operator.truediv, y, float(len(xs))) if mean and len(xs) > 1 else y

    return convert


op("Max")(_variadic(torch.maximum))
op("Min")(_variadic(torch.minimum))
op("Sum")(_variadic(operator.add))
op("Mean")(_variadic(operator.add, mean=True))


@op("Where")
def where(g: Builder, c: Value, a: Value, b: Value) -> Value:
    return g.call(torch.where, c, a, b)


@op("Cast")
def cast(g: Builder, x: Value) -> Value:
    from edgekit.converters.onnx_import.builder import NO_CPU_KERNELS, ONNX_DTYPES

    to = g.attr("to")
    if to not in ONNX_DTYPES:
        raise NodeError(f"Cast to ONNX dtype {to} (PyTorch cannot hold it)")
    if to in NO_CPU_KERNELS:
        raise NodeError(f"Cast to={to} ({NO_CPU_KERNELS[to]}) is not supported: PyTorch has no CPU kernels for "
                        "most ops on it")
    dtype = ONNX_DTYPES[to]
    return x if x.dtype == dtype else g.method("to", x, dtype)


@op("CastLike")
def cast_like(g: Builder, x: Value, like: Value) -> Value:
    return x if x.dtype == like.dtype else g.method("to", x, like.dtype)


# ---------------------------------------------------------------------------- linear algebra


@op("MatMul")
def matmul(g: Builder, a: Value, b: Value) -> Value:
    # A constant 2-D right operand is a fully connected layer: F.linear (FULLY_CONNECTED in TFLite).
    if isinstance(a, Dyn) and isinstance(b, Const) and b.rank == 2 and a.rank >= 2 and a.dtype.is_floating_point:
        return g.call(F.linear, a, Const(b.value.t().contiguous(), f"{b.name}_t"), None)
    return g.call(torch.matmul, a, b)


@op("Gemm")
def gemm(g: Builder, a: Value, b: Value, c: Value | None = None) -> Value:
    ta, tb = int(g.attr("transA", 0)), int(g.attr("transB", 0))
    alpha, beta = float(g.attr("alpha", 1.0)), float(g.attr("beta", 1.0))
    if isinstance(b, Const) and not ta and alpha == 1.0 and a.rank == 2:
        w = b if tb else Const(b.value.t().contiguous(), f"{b.name}_t")
        n = w.shape[0]
        if c is None:
            return g.call(F.linear, a, w, None)
        if isinstance(c, Const) and beta == 1.0 and c.value.numel() in (1, n) and (c.rank == 0 or c.shape[-1] in (1, n)) \
                and c.rank <= 2 and (c.rank < 2 or c.shape[0] == 1):
            bias = c if c.rank == 1 and c.shape[0] == n else Const(c.value.reshape(-1).expand(n).clone(), c.name)
            return g.call(F.linear, a, w, bias)
    am = g.call(torch.t, a) if ta else a
    bm = g.call(torch.t, b) if tb else b
    y = g.call(torch.matmul, am, bm)
    if alpha != 1.0:
        y = g.call(operator.mul, y, alpha)
    if c is not None and beta != 0.0:
        y = g.call(operator.add, y, c if beta == 1.0 else g.call(operator.mul, c, beta))
    return y


@op("Einsum")
def einsum(g: Builder, *xs: Value) -> Value:
    return g.call(torch.einsum, g.attr("equation"), *xs)


# ---------------------------------------------------------------------------- convolution


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _conv_geometry(g: Builder, x: Value, w: Value) -> tuple[int, list[int], list[int], list[int], int]:
    nd = x.rank - 2
    if nd not in _CONV:
        raise NodeError(f"a rank-{x.rank} input: only 1-D, 2-D and 3-D convolutions are supported")
    kernel = list(g.attr("kernel_shape", w.shape[2:]))
    if list(kernel) != list(w.shape[2:]):
        raise NodeError(f"kernel_shape {kernel} does not match the weight's shape {w.shape}")
    strides = list(g.attr("strides", [1] * nd))
    dil = list(g.attr("dilations", [1] * nd))
    return nd, kernel, strides, dil, int(g.attr("group", 1))


@op("Conv")
def conv(g: Builder, x: Value, w: Value, b: Value | None = None) -> Value:
    nd, kernel, strides, dil, group = _conv_geometry(g, x, w)
    begin, end = onnx_pads(g, x.shape[2:], kernel, strides, dil)
    if begin == end:
        padding = begin
    else:  # asymmetric (SAME_* with even kernels, TF-style exports): pad first
        x = g.call(F.pad, x, torch_pad_list([0, 0] + begin, [0, 0] + end))
        padding = [0] * nd
    return g.call(_CONV[nd], x, w, b, strides, padding, dil, group)


@op("ConvTranspose")
def conv_transpose(g: Builder, x: Value, w: Value, b: Value | None = None) -> Value:
    nd, kernel, strides, dil, group = _conv_geometry(g, x, w)
    in_sp = x.shape[2:]
    out_pad = list(g.attr("output_padding", [0] * nd))
    full = [strides[i] * (in_sp[i] - 1) + (kernel[i] - 1) * dil[i] + 1 for i in range(nd)]
    auto = g.attr("auto_pad", "NOTSET")
    out_shape = list(g.attr("output_shape", []))
    if len(out_shape) == nd + 2:
        out_shape = out_shape[2:]
    if not out_shape and auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [in_sp[i] * strides[i] for i in range(nd)]
    if out_shape:
        total = [full[i] + out_pad[i] - out_shape[i] for i in range(nd)]
        if not g.has_attr("output_shape"):  # SAME_*: ONNX Runtime never pads negatively (the output may be shorter)
            total = [max(0, t) for t in total]
        if auto == "SAME_UPPER":
            begin, end = [t // 2 for t in total], [t - t // 2 for t in total]
        else:
            begin, end = [t - t // 2 for t in total], [t // 2 for t in total]
    elif auto == "VALID":
        begin, end = [0] * nd, [0] * nd
    else:
        pads = list(g.attr("pads", [0] * (2 * nd)))
        begin, end = pads[:nd], pads[nd:]
    native = begin == end and all(p >= 0 for p in begin) and all(
        0 <= out_pad[i] < max(strides[i], dil[i]) for i in range(nd))
    if native:
        return g.call(_CONV_T[nd], x, w, b, strides, begin, out_pad, group, dil)
    # General case: the full transposed conv, then pad/crop per side, then the bias.
    y = g.call(_CONV_T[nd], x, w, None, strides, 0, 0, group, dil)
    y = g.call(F.pad, y, torch_pad_list([0, 0] + [-p for p in begin], [0, 0] + [out_pad[i] - end[i] for i in range(nd)]))
    if b is not None:
        bias = g.call(torch.reshape, b, (-1,) + (1,) * nd)
        y = g.call(operator.add, y, bias)
    return y


# ---------------------------------------------------------------------------- normalisation


@op("BatchNormalization")
def batch_norm(g: Builder, x: Value, scale: Value, bias: Value, mean: Value, var: Value) -> Value:
    if g.attr("training_mode", 0):
        raise NodeError("BatchNormalization in training mode cannot be imported", hint="export the model in eval mode")
    if g.opset < 9 and g.attr("spatial", 1) == 0:
        raise NodeError("BatchNormalization with spatial=0 is not supported", hint="re-export with opset ≥ 13")
    return g.call(F.batch_norm, x, mean, var, scale, bias, False, 0.0, float(g.attr("epsilon", 1e-5)))


@op("InstanceNormalization")
def instance_norm(g: Builder, x: Value, scale: Value, bias: Value) -> Value:
    # Instance norm is group norm with one channel per group (F.group_norm exports everywhere).
    return g.call(F.group_norm, x, x.shape[1], scale, bias, float(g.attr("epsilon", 1e-5)))


@op("GroupNormalization")
def group_norm(g: Builder, x: Value, scale: Value, bias: Value) -> Value:
    groups, c = int(g.attr("num_groups")), x.shape[1]
    eps = float(g.attr("epsilon", 1e-5))
    if c % groups:
        raise NodeError(f"{c} channels do not split into num_groups={groups}")
    if g.opset < 21:
        # Opset 18 scales and shifts per group (a spec mistake fixed in opset 21: per channel).
        if math.prod(scale.shape) != groups or math.prod(bias.shape) != groups:
            raise NodeError(f"opset-18 GroupNormalization wants scale and bias of {groups} values (one per group), "
                            f"got {scale.shape} and {bias.shape}")
        scale = g.call(torch.repeat_interleave, g.call(torch.reshape, scale, (groups,)), c // groups)
        bias = g.call(torch.repeat_interleave, g.call(torch.reshape, bias, (groups,)), c // groups)
    return g.call(F.group_norm, x, groups, scale, bias, eps)


def _used(g: Builder, i: int) -> bool:
    """Whether output ``i`` of the current node is read by a later node or the graph."""
    return len(g.node.output) > i and bool(g.node.output[i]) and bool(g.uses[g.node.output[i]])


@op("LayerNormalization")
def layer_norm(g: Builder, x: Value, scale: Value, bias: Value | None = None) -> Value | list:
    axis = axis_of(int(g.attr("axis", -1)), x.rank)
    ns = x.shape[axis:]
    eps = float(g.attr("epsilon", 1e-5))
    stash = int(g.attr("stash_type", 1))
    if stash != 1 and x.dtype != torch.float32:
        raise NodeError(f"LayerNormalization with stash_type={stash} on {x.dtype} is not supported "
                        "(the importer computes the statistics in the input's float32)")
    if _used(g, 1) or _used(g, 2):
        # Mean and InvStdDev (the training outputs, shape x.shape[:axis] + 1s) are wanted: write
        # the normalisation out so they are its own intermediate values.
        dims = list(range(axis, x.rank))
        mean = g.call(torch.mean, x, dims, True)
        d = g.call(operator.sub, x, mean)
        var = g.call(torch.mean, g.call(operator.mul, d, d), dims, True)
        inv = g.call(torch.rsqrt, g.call(operator.add, var, eps))
        y = g.call(operator.mul, g.call(operator.mul, d, inv), scale)
        y = y if bias is None else g.call(operator.add, y, bias)
        return [y, mean, inv]

    def fits(v: Value | None) -> bool:
        if v is None:
            return True
        s = list(v.shape)
        while s and s[0] == 1 and len(s) > len(ns):
            s.pop(0)
        return tuple(s) == ns

    if fits(scale) and fits(bias):
        w = g.call(torch.reshape, scale, ns)
        bb = None if bias is None else g.call(torch.reshape, bias, ns)
        return g.call(F.layer_norm, x, ns, w, bb, eps)
    y = g.call(operator.mul, g.call(F.layer_norm, x, ns, None, None, eps), scale)
    return y if bias is None else g.call(operator.add, y, bias)


def _softmax(fn: Callable) -> OpFn:
    def convert(g: Builder, x: Value) -> Value:
        axis = axis_of(int(g.attr("axis", -1 if g.opset >= 13 else 1)), x.rank)
        if g.opset >= 13 or axis == x.rank - 1:
            return g.call(fn, x, axis)
        # Before opset 13 the input is flattened to 2-D at `axis` and normalised over dim 1.
        flat = g.call(torch.reshape, x, (prod(x.shape[:axis]), prod(x.shape[axis:])))
        return g.call(torch.reshape, g.call(fn, flat, 1), x.shape)

    return convert


op("Softmax")(_softmax(F.softmax))
op("LogSoftmax")(_softmax(F.log_softmax))


# ---------------------------------------------------------------------------- shapes and layout


@op("Shape")
def shape(g: Builder, x: Value) -> Value:
    dims = list(x.shape)
    start, end = int(g.attr("start", 0)), g.attr("end", None)
    return Const(torch.tensor(dims[start:(None if end is None else int(end))], dtype=torch.int64), g.node.output[0])


@op("Size")
def size(g: Builder, x: Value) -> Value:
    return Const(torch.tensor(prod(x.shape), dtype=torch.int64), g.node.output[0])


@op("Constant")
def constant(g: Builder) -> Value:
    name = g.node.output[0]
    for key, make in (("value", lambda v: v), ("value_float", lambda v: torch.tensor(v, dtype=torch.float32)),
                      ("value_floats", lambda v: torch.tensor(v, dtype=torch.float32)),
                      ("value_int", lambda v: torch.tensor(v, dtype=torch.int64)),
                      ("value_ints", lambda v: torch.tensor(v, dtype=torch.int64))):
        if g.has_attr(key):
            return Const(make(g.attr(key)), name)
    raise NodeError("Constant without a numeric value (string and sparse constants are not supported)")


@op("ConstantOfShape")
def constant_of_shape(g: Builder, shape_: Value) -> Value:
    dims = g.ints(shape_, "input")
    v = g.attr("value", None)
    value = torch.zeros(1, dtype=torch.float32) if v is None else v
    return g.call(torch.full, tuple(dims), value.reshape(-1)[0].item(), dtype=value.dtype)


@op("Range")
def range_(g: Builder, start: Value, limit: Value, delta: Value) -> Value:
    s, l, d = (g.const(v, n) for v, n in ((start, "start"), (limit, "limit"), (delta, "delta")))
    return Const(torch.arange(s.item(), l.item(), d.item(), dtype=s.dtype), g.node.output[0])


@op("Reshape")
def reshape(g: Builder, x: Value, shape_: Value) -> Value:
    target = g.ints(shape_, "shape")
    allowzero = int(g.attr("allowzero", 0))
    dims = [x.shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(target)]
    if dims.count(-1) > 1:
        raise NodeError(f"shape {target} has more than one -1")
    if -1 in dims:
        known = prod(d for d in dims if d != -1)
        if known == 0 or prod(x.shape) % known:
            raise NodeError(f"cannot reshape {x.shape} to {target}")
        dims[dims.index(-1)] = prod(x.shape) // known
    if prod(dims) != prod(x.shape):
        raise NodeError(f"cannot reshape {x.shape} to {target}")
    return x if tuple(dims) == x.shape else g.call(torch.reshape, x, tuple(dims))


@op("Flatten")
def flatten(g: Builder, x: Value) -> Value:
    axis = int(g.attr("axis", 1))
    axis = axis if axis >= 0 else axis + x.rank
    if not 0 <= axis <= x.rank:
        raise NodeError(f"axis {g.attr('axis')} is out of range for a rank-{x.rank} input")
    dims = (prod(x.shape[:axis]), prod(x.shape[axis:]))
    return x if dims == x.shape else g.call(torch.reshape, x, dims)


@op("Transpose")
def transpose(g: Builder, x: Value) -> Value:
    perm = list(g.attr("perm", list(range(x.rank))[::-1]))
    return x if perm == list(range(x.rank)) else g.call(torch.permute, x, perm)


def _axes_arg(g: Builder, axes: Value | None, since: int) -> list[int] | None:
    """Axes from the attribute (before opset ``since``) or the optional input (from it)."""
    if g.opset < since:
        a = g.attr("axes", None)
        return None if a is None else list(a)
    return None if axes is None else g.ints(axes, "axes")


@op("Squeeze")
def squeeze(g: Builder, x: Value, axes: Value | None = None) -> Value:
    ax = _axes_arg(g, axes, 13)
    if not ax:
        dims = tuple(d for d in x.shape if d != 1)
    else:
        drop = {axis_of(a, x.rank) for a in ax}
        for a in drop:
            if x.shape[a] != 1:
                raise NodeError(f"cannot squeeze axis {a} of size {x.shape[a]}")
        dims = tuple(d for i, d in enumerate(x.shape) if i not in drop)
    return x if dims == x.shape else g.call(torch.reshape, x, dims)


@op("Unsqueeze")
def unsqueeze(g: Builder, x: Value, axes: Value | None = None) -> Value:
    ax = _axes_arg(g, axes, 13)
    if not ax:
        raise NodeError("Unsqueeze without axes")
    rank = x.rank + len(ax)
    new = sorted(axis_of(a, rank) for a in ax)
    dims, it = [], iter(x.shape)
    for i in range(rank):
        dims.append(1 if i in new else next(it))
    return g.call(torch.reshape, x, tuple(dims))


@op("Concat")
def concat(g: Builder, *xs: Value) -> Value:
    axis = axis_of(int(g.attr("axis")), xs[0].rank)
    keep = [x for x in xs if prod(x.shape) > 0] or [xs[0]]
    return keep[0] if len(keep) == 1 else g.call(torch.cat, list(keep), axis)


@op("Split")
def split(g: Builder, x: Value, sizes: Value | None = None) -> list[Value]:
    axis = axis_of(int(g.attr("axis", 0)), x.rank)
    n_out = len(g.node.output)
    dim = x.shape[axis]
    if g.opset < 13 and g.has_attr("split"):
        parts = list(g.attr("split"))
    elif g.opset >= 13 and sizes is not None:
        parts = g.ints(sizes, "split")
    elif g.has_attr("num_outputs"):
        n = int(g.attr("num_outputs"))
        chunk = -(-dim // n)
        parts = [chunk] * (dim // chunk) + ([dim % chunk] if dim % chunk else [])
    else:
        if dim % n_out:
            raise NodeError(f"axis {axis} of size {dim} does not split into {n_out} equal parts")
        parts = [dim // n_out] * n_out
    if sum(parts) != dim:
        raise NodeError(f"split sizes {parts} do not add up to {dim}")
    return g.call(torch.split, x, parts, axis)


_INT64_MAX = 2**63 - 1


@op("Slice")
def slice_(g: Builder, x: Value, starts: Value | None = None, ends: Value | None = None,
           axes: Value | None = None, steps: Value | None = None) -> Value:
    if g.opset < 10:
        st, en = list(g.attr("starts")), list(g.attr("ends"))
        ax = list(g.attr("axes", range(len(st))))
        sp = [1] * len(st)
    else:
        st, en = g.ints(starts, "starts"), g.ints(ends, "ends")
        ax = g.ints(axes, "axes") if axes is not None else list(range(len(st)))
        sp = g.ints(steps, "steps") if steps is not None else [1] * len(st)
    index: list[slice] = [slice(None)] * x.rank
    flips: list[int] = []
    for s, e, a, step in zip(st, en, ax, sp):
        a = axis_of(a, x.rank)
        dim = x.shape[a]
        if step == 0:
            raise NodeError("Slice step 0")
        if step < 0 and e == _INT64_MAX:
            e = -dim - 1  # ONNX Runtime reads INT64_MAX as "to the end" in either direction
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if step > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            index[a] = slice(s, max(e, s), step)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            n = len(range(s, e, step))
            j0 = dim - 1 - s  # position of `s` once the axis is flipped
            flips.append(a)
            index[a] = slice(j0, j0 + (n - 1) * (-step) + 1 if n else j0, -step)
    if flips:
        x = g.call(torch.flip, x, flips)
    if all(sl == slice(None) or (sl.start == 0 and sl.stop == x.shape[i] and sl.step == 1) for i, sl in enumerate(index)):
        return x
    return g.call(operator.getitem, x, tuple(index))


@op("Pad")
def pad(g: Builder, x: Value, pads_: Value | None = None, value_: Value | None = None, axes_: Value | None = None) -> Value:
    mode = g.attr("mode", "constant")
    if g.opset < 11:
        pads = list(g.attr("pads", g.attr("paddings", [])))
        value = float(g.attr("value", 0.0))
    else:
        pads = g.ints(pads_, "pads")
        value = 0.0 if value_ is None or prod(value_.shape) == 0 else g.scalar(value_, "constant_value")
    axes = [axis_of(a, x.rank) for a in g.ints(axes_, "axes")] if axes_ is not None else list(range(x.rank))
    if len(pads) != 2 * len(axes):
        raise NodeError(f"pads {pads} should have {2 * len(axes)} values")
    begin, end = [0] * x.rank, [0] * x.rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[i + len(axes)]
    p = torch_pad_list(begin, end)
    if not p:
        return x
    if mode == "constant":
        if not x.dtype.is_floating_point:
            value = int(value)
        return g.call(F.pad, x, p, "constant", value)
    tmode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if tmode is None:
        raise NodeError(f"Pad mode {mode!r} is not supported")
    if len(p) // 2 > min(3, x.rank - 1) or any(v < 0 for v in p):
        raise NodeError(f"Pad mode {mode!r} on axes {axes} with pads {pads}: PyTorch pads only the last "
                        "three non-batch axes this way, without cropping")
    return g.call(F.pad, x, p, tmode)


def _conv_with_permuted_outputs(g: Builder, x: Value, perm: list[int]) -> Value | None:
    """``x[:, perm]`` folded into the conv that computes ``x`` (its weights and bias reordered),
    when ``x`` is the output of a constant-weight, ungrouped conv with no other consumer."""
    if not isinstance(x, Dyn) or x.node.target not in _CONV.values() or g.uses[g.node.input[0]] != 1:
        return None
    inp, w_node, b_node, *rest = x.node.args
    if len(rest) != 4 or rest[3] != 1:
        return None
    w = g.const_of(w_node)
    b = None if b_node is None else g.const_of(b_node)
    if w is None or (b_node is not None and b is None):
        return None
    idx = torch.tensor(perm)
    args = (inp, g.fx_node(Const(w.value[idx].contiguous(), f"{w.name}_d2s")),
            None if b is None else g.fx_node(Const(b.value[idx].contiguous(), f"{b.name}_d2s")), *rest)
    node = g.graph.call_function(x.node.target, args)
    g._tag(node)
    return Dyn(node, x.meta)


@op("DepthToSpace")
def depth_to_space(g: Builder, x: Value) -> Value:
    """CRD is PyTorch's pixel shuffle. DCR (TensorFlow's order) is a pixel shuffle of the
    channels reordered — folded into the producing conv when there is one, so the graph stays
    rank 4 (CoreML's limit is rank 5) with no gather."""
    bs = int(g.attr("blocksize"))
    mode = g.attr("mode", "DCR")
    if x.rank != 4:
        raise NodeError(f"DepthToSpace on a rank-{x.rank} input (ONNX defines it for 4-D)")
    c = x.shape[1]
    if c % (bs * bs):
        raise NodeError(f"{c} channels do not divide by blocksize² = {bs * bs}")
    if mode == "DCR":
        cp = c // (bs * bs)
        # CRD channel k·bs² + ij holds DCR channel ij·c' + k.
        perm = [ij * cp + k for k in range(cp) for ij in range(bs * bs)]
        y = _conv_with_permuted_outputs(g, x, perm)
        x = y if y is not None else g.call(torch.index_select, x, 1, Const(torch.tensor(perm), f"{g.node.output[0]}_perm"))
    elif mode != "CRD":
        raise NodeError(f"DepthToSpace mode {mode!r} is not an ONNX value")
    return g.call(F.pixel_shuffle, x, bs)


@op("SpaceToDepth")
def space_to_depth(g: Builder, x: Value) -> Value:
    """PyTorch's pixel unshuffle orders channels c·bs² + ij (ONNX's CRD mode); ONNX's default,
    DCR, orders them ij·C + c."""
    bs = int(g.attr("blocksize"))
    mode = g.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise NodeError(f"SpaceToDepth mode {mode!r} is not an ONNX value")
    if x.rank != 4:
        raise NodeError(f"SpaceToDepth on a rank-{x.rank} input (ONNX defines it for 4-D)")
    c, h, w = x.shape[1:]
    if h % bs or w % bs:
        raise NodeError(f"spatial size {h}x{w} does not divide by blocksize {bs}")
    y = g.call(F.pixel_unshuffle, x, bs)
    if c == 1 or mode == "CRD":
        return y
    perm = [k * bs * bs + ij for ij in range(bs * bs) for k in range(c)]
    return g.call(torch.index_select, y, 1, Const(torch.tensor(perm), f"{g.node.output[0]}_perm"))


@op("Expand")
def expand(g: Builder, x: Value, shape_: Value) -> Value:
    target = torch.broadcast_shapes(x.shape, tuple(g.ints(shape_, "shape")))
    if tuple(target) == x.shape:
        return x
    y = x if x.rank == len(target) else g.call(torch.reshape, x, (1,) * (len(target) - x.rank) + x.shape)
    return g.method("expand", y, tuple(target))


@op("Tile")
def tile(g: Builder, x: Value, repeats: Value) -> Value:
    reps = g.ints(repeats, "repeats")
    return x if all(r == 1 for r in reps) else g.method("repeat", x, tuple(reps))


@op("Gather")
def gather(g: Builder, x: Value, idx: Value) -> Value:
    axis = axis_of(int(g.attr("axis", 0)), x.rank)
    dim = x.shape[axis]
    out_shape = x.shape[:axis] + idx.shape + x.shape[axis + 1:]
    if isinstance(idx, Const):
        i = idx.value.to(torch.int64)
        i = torch.where(i < 0, i + dim, i)
        if i.numel() and (int(i.min()) < 0 or int(i.max()) >= dim):
            raise NodeError(f"indices out of range for axis {axis} of size {dim}")
        if i.dim() == 0:
            return g.call(torch.select, x, axis, int(i))
        flat = i.reshape(-1).tolist()
        if flat and flat == list(range(flat[0], flat[0] + len(flat))):  # a contiguous run: a slice
            index = [slice(None)] * x.rank
            index[axis] = slice(flat[0], flat[0] + len(flat))
            y = g.call(operator.getitem, x, tuple(index))
            return y if y.shape == out_shape else g.call(torch.reshape, y, out_shape)
        flat_idx = Const(i.reshape(-1), idx.name)
    else:
        i = idx if idx.dtype == torch.int64 else g.method("to", idx, torch.int64)
        i = g.call(torch.where, g.call(torch.lt, i, 0), g.call(operator.add, i, dim), i)
        flat_idx = g.call(torch.reshape, i, (-1,))
    y = g.call(torch.index_select, x, axis, flat_idx)
    return y if y.shape == out_shape else g.call(torch.reshape, y, out_shape)


@op("GatherElements")
def gather_elements(g: Builder, x: Value, idx: Value) -> Value:
    axis = axis_of(int(g.attr("axis", 0)), x.rank)
    dim = x.shape[axis]
    i = idx if idx.dtype == torch.int64 else g.method("to", idx, torch.int64)
    i = g.call(torch.where, g.call(torch.lt, i, 0), g.call(operator.add, i, dim), i)
    return g.call(torch.gather, x, axis, i)


@op("CumSum")
def cumsum(g: Builder, x: Value, axis_: Value) -> Value:
    axis = axis_of(int(g.scalar(axis_, "axis")), x.rank)
    rev, excl = int(g.attr("reverse", 0)), int(g.attr("exclusive", 0))
    y = g.call(torch.flip, x, [axis]) if rev else x
    s = g.call(torch.cumsum, y, axis, dtype=x.dtype)  # torch widens integer sums to int64
    if excl:
        s = g.call(operator.sub, s, y)
    return g.call(torch.flip, s, [axis]) if rev else s


# ---------------------------------------------------------------------------- reductions


def _reduce_dims(g: Builder, x: Value, axes: Value | None, since: int) -> list[int] | None:
    """The axes to reduce (sorted); ``None`` means 'leave the input as it is'."""
    ax = _axes_arg(g, axes, since)
    noop = int(g.attr("noop_with_empty_axes", 0))  # read always: it only matters without axes
    if not ax:
        if g.opset >= since and noop:
            return None
        return list(range(x.rank))
    return sorted({axis_of(a, x.rank) for a in ax})


def _reducer(fn: Callable[[Builder, Value, list[int], bool], Value], since: int = 18) -> OpFn:
    def convert(g: Builder, x: Value, axes: Value | None = None) -> Value:
        dims = _reduce_dims(g, x, axes, since)
        if dims is None:
            return x
        return fn(g, x, dims, bool(g.attr("keepdims", 1)))

    return convert


op("ReduceMean")(_reducer(lambda g, x, d, k: g.call(torch.mean, x, d, k)))
op("ReduceSum")(_reducer(lambda g, x, d, k: g.call(torch.sum, x, d, k), since=13))
op("ReduceMax")(_reducer(lambda g, x, d, k: g.call(torch.amax, x, d, k)))
op("ReduceMin")(_reducer(lambda g, x, d, k: g.call(torch.amin, x, d, k)))
op("ReduceSumSquare")(_reducer(lambda g, x, d, k: g.call(torch.sum, g.call(operator.mul, x, x), d, k)))
op("ReduceL1")(_reducer(lambda g, x, d, k: g.call(torch.sum, g.call(torch.abs, x), d, k)))
op("ReduceL2")(_reducer(lambda g, x, d, k: g.call(torch.sqrt, g.call(torch.sum, g.call(operator.mul, x, x), d, k))))
op("ReduceLogSumExp")(_reducer(lambda g, x, d, k: g.call(torch.logsumexp, x, d, k)))
op("ReduceLogSum")(_reducer(lambda g, x, d, k: g.call(torch.log, g.call(torch.sum, x, d, k))))


def _reduce_prod(g: Builder, x: Value, dims: list[int], keep: bool) -> Value:
    for d in sorted(dims, reverse=True):
        x = g.call(torch.prod, x, d, True)
    return x if keep else g.call(torch.reshape, x, tuple(s for i, s in enumerate(x.shape) if i not in dims))


op("ReduceProd")(_reducer(_reduce_prod))


def _arg(fn: Callable) -> OpFn:
    def convert(g: Builder, x: Value) -> Value:
        axis = axis_of(int(g.attr("axis", 0)), x.rank)
        keep = bool(g.attr("keepdims", 1))
        if int(g.attr("select_last_index", 0)):
            i = g.call(fn, g.call(torch.flip, x, [axis]), axis, keep)
            return g.call(operator.sub, x.shape[axis] - 1, i)
        return g.call(fn, x, axis, keep)

    return convert


op("ArgMax")(_arg(torch.argmax))
op("ArgMin")(_arg(torch.argmin))
