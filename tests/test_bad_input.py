"""Bad arguments raise clear Python errors; valid edge cases (N = 0, 1x1x1 volumes) match PyTorch."""

import inspect

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import vid3d
from vid3d import ops as vops

from _helpers import REFERENCES

WRAPPER_BACKENDS = ["cpu", "torch"]
F64, META = torch.float64, "meta"
# Valid shapes: input, depthwise weight, (2+1)D spatial and temporal weights, the two cat inputs.
X, W, WS, WT = (2, 4, 5, 6, 7), (4, 1, 3, 3, 3), (8, 4, 1, 3, 3), (6, 8, 3, 1, 1)
A, B = (2, 3, 5, 6, 7), (2, 5, 5, 6, 7)


def t(*shape, dtype=torch.float32, device="cpu"):
    """A tensor whose values do not matter (only its shape, dtype and device do)."""
    return torch.ones(shape, dtype=dtype, device=device)


# Valid arguments of each op; every bad case below overrides some of them.
# conv2plus1d maps 4 -> 8 channels with (1, 3, 3), then 8 -> 6 with (3, 1, 1).
OPS = {
    "depthwise_conv3d": (vops.depthwise_conv3d, lambda: dict(input=t(*X), weight=t(*W))),
    "channel_shuffle3d": (vops.channel_shuffle3d, lambda: dict(input=t(*X), groups=2)),
    "cat_shuffle3d": (vops.cat_shuffle3d, lambda: dict(tensors=[t(*A), t(*B)], groups=2)),
    "conv2plus1d": (vops.conv2plus1d, lambda: dict(input=t(*X), spatial_weight=t(*WS), temporal_weight=t(*WT))),
}
CONV_OPS = ["depthwise_conv3d", "conv2plus1d"]
SHUFFLE_OPS = ["channel_shuffle3d", "cat_shuffle3d"]


def call(op, overrides=None):
    """Run ``op`` on its valid arguments updated by ``overrides`` (a dict, or a function of the arguments)."""
    fn, defaults = OPS[op]
    args = defaults()
    args.update(overrides(args) if callable(overrides) else overrides or {})
    return fn(**args)


def all_as(dtype):
    return lambda args: {name: value.to(dtype) for name, value in args.items()}


def case(op, name, exc, match, overrides):
    return pytest.param(op, overrides, exc, match, id=f"{op}-{name}")


# Cases shared by both conv ops: (name, exception, message regex, overrides).
CONV_COMMON = [
    ("rank4", ValueError, r"input must be 5-D", dict(input=t(2, 4, 6, 7))),
    ("rank6", ValueError, r"input must be 5-D", dict(input=t(*X, 1))),
    ("input-not-tensor", TypeError, r"input must be a torch\.Tensor", dict(input=[[1.0]])),
    ("int32", TypeError, r"input must be float32.*int32", all_as(torch.int32)),
    ("int64", TypeError, r"input must be float32.*int64", all_as(torch.int64)),
    ("stride0", ValueError, r"stride must be at least 1", dict(stride=0)),
    ("stride-negative", ValueError, r"stride must be at least 1", dict(stride=(1, -1, 1))),
    ("stride-2-tuple", TypeError, r"stride must be an int or a sequence of 3", dict(stride=(1, 1))),
    ("stride-float", TypeError, r"stride must be an int or a sequence of 3", dict(stride=1.0)),
    ("dilation0", ValueError, r"dilation must be at least 1", dict(dilation=(1, 0, 1))),
    ("padding-negative", ValueError, r"padding must be at least 0", dict(padding=-1)),
    ("output-empty", ValueError, r"output would be", dict(input=t(2, 4, 2, 2, 2))),
    ("output-empty-dilated", ValueError, r"output would be", dict(padding=1, dilation=(1, 1, 5))),
]

BAD_CASES = [case(op, *c) for op in CONV_OPS for c in CONV_COMMON]
BAD_CASES += [
    case("depthwise_conv3d", *c)
    for c in [
        ("weight-rank4", ValueError, r"weight must be 5-D", dict(weight=t(4, 1, 3, 3))),
        ("weight-not-tensor", TypeError, r"weight must be a torch\.Tensor", dict(weight=3.0)),
        ("weight-channels", ValueError, r"weight must have shape \(C, 1", dict(weight=t(3, 1, 3, 3, 3))),
        ("weight-not-depthwise", ValueError, r"weight must have shape \(C, 1", dict(weight=t(4, 2, 3, 3, 3))),
        ("weight-dtype", TypeError, r"weight has dtype torch\.float64", dict(weight=t(*W, dtype=F64))),
        ("weight-device", RuntimeError, r"weight is on meta", dict(weight=t(*W, device=META))),
        ("bias-shape", ValueError, r"bias must have shape \(4,\)", dict(bias=t(3))),
        ("bias-2d", ValueError, r"bias must have shape \(4,\)", dict(bias=t(4, 1))),
        ("bias-dtype", TypeError, r"bias has dtype torch\.float64", dict(bias=t(4, dtype=F64))),
        ("bias-device", RuntimeError, r"bias is on meta", dict(bias=t(4, device=META))),
    ]
]
BAD_CASES += [
    case("conv2plus1d", *c)
    for c in [
        ("spatial-rank4", ValueError, r"spatial_weight must be 5-D", dict(spatial_weight=t(8, 4, 3, 3))),
        ("temporal-not-tensor", TypeError, r"temporal_weight must be a torch\.Tensor", dict(temporal_weight=None)),
        ("spatial-in-channels", ValueError, r"spatial_weight .* does not fit 4", dict(spatial_weight=t(8, 3, 1, 3, 3))),
        ("spatial-groups", ValueError, r"spatial_weight .* does not fit 4", dict(spatial_weight=t(5, 2, 1, 3, 3))),
        ("spatial-3x3x3", ValueError, r"spatial_weight must have shape", dict(spatial_weight=t(8, 4, 3, 3, 3))),
        ("spatial-4x2x3x3x3", ValueError, r"spatial_weight must have shape", dict(spatial_weight=t(4, 2, 3, 3, 3))),
        ("temporal-kh", ValueError, r"temporal_weight must have shape", dict(temporal_weight=t(6, 8, 3, 3, 1))),
        ("temporal-kw", ValueError, r"temporal_weight must have shape", dict(temporal_weight=t(6, 8, 3, 1, 3))),
        ("chain-in-channels", ValueError, r"temporal_weight .* does not fit 8", dict(temporal_weight=t(6, 5, 3, 1, 1))),
        ("chain-too-wide", ValueError, r"temporal_weight .* does not fit 8", dict(temporal_weight=t(6, 16, 3, 1, 1))),
        ("chain-groups", ValueError, r"temporal_weight .* does not fit 8", dict(temporal_weight=t(5, 4, 3, 1, 1))),
        ("spatial-dtype", TypeError, r"spatial_weight has dtype", dict(spatial_weight=t(*WS, dtype=F64))),
        ("temporal-dtype", TypeError, r"temporal_weight has dtype", dict(temporal_weight=t(*WT, dtype=torch.float16))),
        ("spatial-device", RuntimeError, r"spatial_weight is on meta", dict(spatial_weight=t(*WS, device=META))),
        ("temporal-device", RuntimeError, r"temporal_weight is on meta", dict(temporal_weight=t(*WT, device=META))),
        ("spatial-bias-shape", ValueError, r"spatial_bias must have shape \(8,\)", dict(spatial_bias=t(4))),
        ("temporal-bias-shape", ValueError, r"temporal_bias must have shape \(6,\)", dict(temporal_bias=t(8))),
        ("spatial-bias-dtype", TypeError, r"spatial_bias has dtype", dict(spatial_bias=t(8, dtype=F64))),
        ("temporal-bias-dtype", TypeError, r"temporal_bias has dtype", dict(temporal_bias=t(6, dtype=torch.bfloat16))),
        ("temporal-output-empty", ValueError, r"output would be", dict(input=t(2, 4, 2, 6, 7))),
        ("mid-activation-gelu", ValueError, r"mid_activation must be None or 'relu'", dict(mid_activation="gelu")),
        ("mid-activation-relu-fn", ValueError, r"mid_activation", dict(mid_activation=torch.relu)),
    ]
]
# groups checks, shared by both shuffles (4 and 8 channels: 3 divides neither).
BAD_CASES += [
    case(op, *c)
    for op in SHUFFLE_OPS
    for c in [
        ("groups-not-divisor", ValueError, r"groups must be a positive divisor", dict(groups=3)),
        ("groups0", ValueError, r"groups must be a positive divisor", dict(groups=0)),
        ("groups-negative", ValueError, r"groups must be a positive divisor", dict(groups=-2)),
        ("groups-float", TypeError, r"groups must be an int", dict(groups=2.0)),
        ("groups-bool", TypeError, r"groups must be an int", dict(groups=True)),
        ("groups-str", TypeError, r"groups must be an int", dict(groups="2")),
    ]
]
BAD_CASES += [
    case("channel_shuffle3d", *c)
    for c in [
        ("rank4", ValueError, r"input must be 5-D", dict(input=t(2, 4, 6, 7))),
        ("rank6", ValueError, r"input must be 5-D", dict(input=t(*X, 1))),
        ("input-not-tensor", TypeError, r"input must be a torch\.Tensor", dict(input=[t(*X)])),
    ]
]
BAD_CASES += [
    case("cat_shuffle3d", *c)
    for c in [
        ("empty-list", TypeError, r"tensors must be a non-empty list", dict(tensors=[])),
        ("bare-tensor", TypeError, r"tensors must be a non-empty list or tuple", dict(tensors=t(2, 8, 5, 6, 7))),
        ("element-not-tensor", TypeError, r"tensors\[1\] must be a torch\.Tensor", dict(tensors=[t(*A), 1.0])),
        ("rank4", ValueError, r"tensors\[0\] must be 5-D", dict(tensors=[t(2, 3, 6, 7), t(2, 5, 6, 7)])),
        ("rank6", ValueError, r"tensors\[1\] must be 5-D", dict(tensors=[t(*A), t(*B, 1)])),
        ("dtype", TypeError, r"tensors\[1\] has dtype", dict(tensors=[t(*A), t(*B, dtype=F64)])),
        ("device", RuntimeError, r"tensors\[1\] is on meta", dict(tensors=[t(*A), t(*B, device=META)])),
    ]
]
BAD_CASES += [
    case("cat_shuffle3d", f"mismatched-{dim_name}", ValueError, r"tensors\[1\] has shape .* does not match",
         dict(tensors=[t(*A), t(*shape)]))
    for dim_name, shape in [("N", (3, 5, 5, 6, 7)), ("T", (2, 5, 4, 6, 7)), ("H", (2, 5, 5, 5, 7)),
                            ("W", (2, 5, 5, 6, 8))]
]


@pytest.mark.parametrize("backend", WRAPPER_BACKENDS)
@pytest.mark.parametrize("op, overrides, exc, match", BAD_CASES)
def test_bad_input_raises(backend, op, overrides, exc, match):
    with vid3d.backend(backend), pytest.raises(exc, match=match) as info:
        call(op, overrides)
    assert f"vid3d.ops.{op}" in str(info.value)


@pytest.mark.parametrize("name", ["gpu", "CPU", "", None, 1])
def test_unknown_backend_name(name):
    before = vid3d.get_backend()
    with pytest.raises(ValueError, match=r"unknown vid3d backend"):
        vid3d.set_backend(name)
    with pytest.raises(ValueError, match=r"unknown vid3d backend"):
        with vid3d.backend(name):
            pass
    assert vid3d.get_backend() == before


@pytest.mark.parametrize("backend, missing", [("cuda", r"cuda tensors|CUDA|vid3d\._C"),
                                              ("triton", r"Triton.*TRITON_INTERPRET")])
@pytest.mark.parametrize("op", OPS)
def test_unusable_backend_for_cpu_tensors(op, backend, missing, monkeypatch):
    if backend == "triton":  # CPU tensors need Triton's interpreter, which the test session turns on
        from vid3d import kernels as triton_kernels

        monkeypatch.setattr(triton_kernels, "INTERPRETED", False)
    match = rf"{op}: backend '{backend}' is not usable: .*({missing})"
    with vid3d.backend(backend), pytest.raises(RuntimeError, match=match):
        call(op)


@pytest.mark.parametrize("op", OPS)
def test_without_the_native_extension_auto_and_torch_run_pytorch(op, monkeypatch):
    """Where vid3d._C did not load, "auto" and "torch" run PyTorch without consulting the native ops
    (auto's CPU table asks them for the instruction set), and "cpu" says what is missing."""
    with vid3d.backend("torch"):
        expected = call(op)
    from vid3d.ops import _kernels

    def native_ops_consulted():
        raise AssertionError("the native ops were consulted")

    monkeypatch.setattr(_kernels, "_C", None)
    monkeypatch.setattr(_kernels, "cpu_vector_isa", native_ops_consulted)
    for backend in ("auto", "torch"):
        with vid3d.backend(backend):
            assert torch.equal(call(op), expected)
    with vid3d.backend("cpu"), pytest.raises(RuntimeError, match=rf"{op}: backend 'cpu' is not usable: .*vid3d\._C"):
        call(op)


# ---------------------------------------------------------------- valid edge cases


def edge_case(op, n, size, dtype):
    """(vid3d call, PyTorch reference, argument tensors) of a valid call of ``op`` on (n, 4, *size) input.

    The convs use 3x3x3 kernels (conv2plus1d: 1x3x3 grouped dense then 3x1x1 depthwise) and padding 1.
    """
    gen = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(shape, dtype=dtype, generator=gen)  # noqa: E731
    x = r(n, 4, *size)
    if op == "depthwise_conv3d":
        return (lambda x, w, b: vops.depthwise_conv3d(x, w, b, padding=1),
                lambda x, w, b: F.conv3d(x, w, b, padding=1, groups=4), [x, r(4, 1, 3, 3, 3), r(4)])
    if op == "conv2plus1d":
        def reference(x, ws, wt, bs, bt):
            mid = F.relu(F.conv3d(x, ws, bs, padding=(0, 1, 1), groups=2))
            return F.conv3d(mid, wt, bt, padding=(1, 0, 0), groups=8)

        return (lambda *a: vops.conv2plus1d(*a, padding=1, mid_activation="relu"), reference,
                [x, r(8, 2, 1, 3, 3), r(8, 1, 3, 1, 1), r(8), r(8)])
    if op == "channel_shuffle3d":
        return lambda x: vops.channel_shuffle3d(x, 2), lambda x: F.channel_shuffle(x, 2), [x]
    return (lambda x, y: vops.cat_shuffle3d([x, y], 3),
            lambda x, y: F.channel_shuffle(torch.cat([x, y], 1), 3), [x, r(n, 2, *size)])


def forward_backward(fn, args):
    """fn's output and the gradients of all its arguments for a fixed random grad_output."""
    leaves = [a.detach().clone().requires_grad_() for a in args]
    out = fn(*leaves)
    out.backward(torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1)))
    return out.detach(), [leaf.grad for leaf in leaves]


def check_against_reference(op, n, size, dtype, backend, tol):
    fn, reference, args = edge_case(op, n, size, dtype)
    with vid3d.backend(backend):
        out, grads = forward_backward(fn, args)
    expected, expected_grads = forward_backward(reference, args)
    assert out.shape == expected.shape and out.dtype == dtype
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    for arg, grad, expected_grad in zip(args, grads, expected_grads):
        assert grad is not None and grad.shape == arg.shape
        torch.testing.assert_close(grad, expected_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", WRAPPER_BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_empty_batch_matches_pytorch(op, backend):
    # N = 0: empty outputs and input grads, all-zero weight and bias grads.
    check_against_reference(op, 0, (3, 4, 5), torch.float32, backend, tol=0)


@pytest.mark.parametrize("op", CONV_OPS)
def test_single_voxel_matches_pytorch(op):
    # T = H = W = 1 with padding 1: only the kernels' centre taps see data.
    check_against_reference(op, 2, (1, 1, 1), torch.float64, "cpu", tol=1e-10)


def test_convolutions_need_channels():
    """Zero channels means zero groups, which F.conv3d refuses: every backend says so clearly.
    Found by the fuzzing below: conv2plus1d raised ZeroDivisionError, depthwise_conv3d returned an
    empty result on the "cpu" backend and raised PyTorch's unnamed error on "torch"."""
    for backend in WRAPPER_BACKENDS:
        with vid3d.backend(backend):
            for op in CONV_OPS:
                with pytest.raises(ValueError, match=rf"vid3d\.ops\.{op}: input must have at least one channel"):
                    call(op, dict(input=t(2, 0, 5, 6, 7)))
    # conv2plus1d: neither stage may have zero output channels (the second found by the fuzzing below).
    for name, weight in (("spatial_weight", t(0, 4, 1, 3, 3)), ("temporal_weight", t(0, 8, 3, 1, 1))):
        with pytest.raises(ValueError, match=rf"{name} must have at least one output channel"):
            call("conv2plus1d", {name: weight})


# ---------------------------------------------------------------- fuzzed arguments
# Any argument replaced by anything: a tensor of any rank, size (zeros included), dtype or device,
# or a value of the wrong kind. The op must raise a ValueError, TypeError or RuntimeError naming
# itself before any kernel runs, or, where the call is valid after all, agree with PyTorch.

TENSOR_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64,
                 torch.uint8, torch.bool, torch.complex64]
ODD_VALUES = [None, 0, 1, -2, 1.5, float("nan"), True, False, "x", "", "same", "valid", [1.0], (), {}, object(),
              torch.tensor(1), torch.tensor(1.0), torch.tensor([1, 1, 1])]


def any_tensor():
    return st.builds(
        lambda shape, dtype, device: torch.ones(shape, dtype=dtype, device=device),
        st.lists(st.integers(0, 4), max_size=6),
        st.sampled_from(TENSOR_DTYPES),
        st.sampled_from(["cpu", "meta"]),
    )


def valid_tensor(shape):
    """A tensor of the valid shape with another dtype or device, or one of its sizes changed."""
    changed_size = st.tuples(st.integers(0, len(shape) - 1), st.integers(0, 9)).map(
        lambda change: t(*shape[: change[0]], change[1], *shape[change[0] + 1:])
    )
    other_kind = st.tuples(st.sampled_from(TENSOR_DTYPES), st.sampled_from(["cpu", "meta"])).map(
        lambda kind: t(*shape, dtype=kind[0], device=kind[1])
    )
    return st.one_of(changed_size, other_kind)


def triples():
    ints = st.integers(-3, 4)
    return st.one_of(ints, st.lists(ints, max_size=4), st.lists(ints, max_size=4).map(tuple),
                     st.sampled_from(ODD_VALUES + [(1, 1.5, 1), (1, "1", 1), (1, None, 1), "full"]))


ARGUMENT_VALUES = {
    **{name: st.one_of(any_tensor(), st.sampled_from(ODD_VALUES))
       for name in ("input", "weight", "bias", "spatial_weight", "temporal_weight", "spatial_bias", "temporal_bias")},
    "stride": triples(), "padding": triples(), "dilation": triples(),
    "groups": st.one_of(st.integers(-3, 10), st.sampled_from(ODD_VALUES)),
    "activation": st.sampled_from(ODD_VALUES + ["relu", "relu6", "RELU", "gelu", torch.relu]),
    "mid_activation": st.sampled_from(ODD_VALUES + ["relu", "relu6", torch.relu]),
    "tensors": st.one_of(st.lists(st.one_of(any_tensor(), st.sampled_from(ODD_VALUES)), max_size=4),
                         st.lists(any_tensor(), max_size=4).map(tuple), any_tensor(), st.sampled_from(ODD_VALUES)),
}


@st.composite
def bad_overrides(draw, op):
    """Some of op's arguments replaced: by anything, or (tensors) by near misses of the valid ones."""
    valid = OPS[op][1]()
    names = draw(st.lists(st.sampled_from(sorted(ARGUMENT_VALUES.keys() & _parameters(op))), min_size=1,
                          max_size=3, unique=True))
    overrides = {}
    for name in names:
        value = valid.get(name)
        if isinstance(value, torch.Tensor) and draw(st.booleans()):
            overrides[name] = draw(valid_tensor(value.shape))
        elif isinstance(value, list) and draw(st.booleans()):  # one tensor of a concatenation
            i = draw(st.integers(0, len(value) - 1))
            overrides[name] = value[:i] + [draw(valid_tensor(value[i].shape))] + value[i + 1:]
        else:
            overrides[name] = draw(ARGUMENT_VALUES[name])
    return overrides


def _parameters(op):
    return set(inspect.signature(OPS[op][0]).parameters)


def _plain(value):
    """Integer-like values (0-d integer tensors) as ints, which F.conv3d takes too."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        return int(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    return value


FUZZ_BACKENDS = ["auto", "cpu", "torch"]


@pytest.mark.parametrize("backend", FUZZ_BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_fuzzed_arguments_raise_or_match_pytorch(op, backend):
    @given(bad_overrides(op))
    def raises_or_matches(overrides):
        args = {**OPS[op][1](), **overrides}
        try:
            with vid3d.backend(backend):
                result = OPS[op][0](**args)
        except (ValueError, TypeError, RuntimeError) as error:
            assert str(error).startswith(f"vid3d.ops.{op}: "), f"unclear error: {type(error).__name__}: {error}"
            return
        # Accepted: a valid call after all, which PyTorch must accept and agree with.
        reference = REFERENCES[op](**{name: _plain(value) for name, value in args.items()})
        assert result.shape == reference.shape and result.dtype == reference.dtype
        assert result.device == reference.device
        if result.device.type != "meta":
            torch.testing.assert_close(result, reference, equal_nan=True)

    raises_or_matches()


@pytest.mark.parametrize("op", OPS)
def test_meta_tensors_infer_shapes_like_pytorch(op):
    """Found by the fuzzing above: meta input once failed in the autocast query (meta has no autocast)."""
    args = {name: value.to("meta") if isinstance(value, torch.Tensor) else value for name, value in OPS[op][1]().items()}
    if op == "cat_shuffle3d":
        args["tensors"] = [tensor.to("meta") for tensor in args["tensors"]]
    result, reference = OPS[op][0](**args), REFERENCES[op](**args)
    assert result.device.type == "meta" and result.shape == reference.shape and result.dtype == reference.dtype


@given(st.one_of(st.text(max_size=8), st.integers(), st.none(), st.booleans(), st.floats(),
                 st.sampled_from([b"cpu", ["cpu"], ("torch",), "cpu ", "Torch", "TRITON", torch.device("cpu")])))
def test_fuzzed_backend_names(name):
    """Anything but a backend's exact name is refused, by both setters, and changes nothing."""
    assume(not (isinstance(name, str) and name in vid3d.BACKENDS))
    before = vid3d.get_backend()
    with pytest.raises(ValueError, match=r"unknown vid3d backend"):
        vid3d.set_backend(name)
    with pytest.raises(ValueError, match=r"unknown vid3d backend"), vid3d.backend(name):
        pass
    assert vid3d.get_backend() == before


# The native kernels behind the CPU backend, called directly with inconsistent arguments (as
# torch.ops.vid3d_native.* can be): they must raise, never crash or write out of bounds. Run in a
# child process, so that a crash fails this test instead of ending the session.
NATIVE_FUZZ = r"""
import sys, torch, vid3d
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

native = torch.ops.vid3d_native
sizes = st.lists(st.integers(0, 5), min_size=5, max_size=5)
ints = st.lists(st.integers(-2, 3), min_size=2, max_size=4)

@settings(max_examples=int(sys.argv[1]), derandomize=True, deadline=None, database=None)
@given(sizes, sizes, sizes, st.one_of(st.none(), st.lists(st.integers(0, 5), max_size=2)), ints, ints, ints,
       st.sampled_from([torch.float32, torch.float64, torch.int32]))
def depthwise(x_shape, w_shape, out_shape, bias_shape, stride, padding, dilation, out_dtype):
    x, w = torch.randn(x_shape), torch.randn(w_shape)
    out = torch.zeros(out_shape, dtype=out_dtype)
    bias = None if bias_shape is None else torch.randn(bias_shape)
    try:
        native.depthwise_conv3d_forward(x, w, bias, stride, padding, dilation, out, None)
    except (RuntimeError, TypeError, ValueError, IndexError):
        return
    # Accepted: the arguments were consistent after all.
    expected = F.conv3d(x, w, bias, stride, padding, dilation, groups=x.shape[1])
    assert torch.allclose(out, expected, atol=1e-4), "accepted an inconsistent call"
    try:
        grads = [torch.empty_like(x), torch.empty_like(w), torch.empty(w.shape[0])]
        native.depthwise_conv3d_backward(torch.randn(out_shape), x, w, stride, padding, dilation, *grads)
    except (RuntimeError, TypeError, ValueError, IndexError):
        return

@settings(max_examples=int(sys.argv[1]), derandomize=True, deadline=None, database=None)
@given(st.lists(sizes, min_size=1, max_size=3), sizes, st.integers(-2, 6))
def shuffle(shapes, out_shape, groups):
    inputs, out = [torch.randn(s) for s in shapes], torch.zeros(out_shape)
    for call in (lambda: native.cat_shuffle3d_forward(inputs, groups, out),
                 lambda: native.cat_shuffle3d_backward(out, groups, inputs)):
        try:
            call()
        except (RuntimeError, TypeError, ValueError, IndexError):
            pass

depthwise()
shuffle()
print("no crash")
"""


def test_native_kernels_refuse_inconsistent_arguments(tmp_path):
    import subprocess
    import sys

    examples = str(settings.default.max_examples)
    result = subprocess.run([sys.executable, "-c", NATIVE_FUZZ, examples], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0 and "no crash" in result.stdout, (result.returncode, result.stderr[-3000:])
