"""Reliability of the ops on every backend usable here: NaN and Inf propagate as in PyTorch,
backward passes are bitwise repeatable, inputs of more than 2**31 elements compute correctly,
repeated calls hold no growing memory, and threads with their own backends get right answers."""

from __future__ import annotations

import ctypes
import gc
import os
import threading

import pytest
import torch

import vid3d
from vid3d import ops
from vid3d.ops import _custom_ops, _kernels

from _helpers import REFERENCES, backend_params, invoke, randn

# One small call of each op: (op, tensor shapes, keyword arguments). The convolutions pad, stride
# and dilate; conv2plus1d once as a depthwise pair (Triton fuses it), once with dense stages.
CALLS = {
    "depthwise_conv3d": ([(2, 4, 5, 6, 7), (4, 1, 3, 3, 3), (4,)], dict(stride=(1, 2, 1), padding=1)),
    "conv2plus1d-depthwise": ([(2, 4, 5, 6, 7), (4, 1, 1, 3, 3), (4, 1, 3, 1, 1), (4,), (4,)],
                              dict(padding=1, dilation=(2, 1, 1), mid_activation="relu")),
    "conv2plus1d-dense": ([(2, 4, 5, 6, 7), (6, 2, 1, 3, 3), (3, 6, 3, 1, 1), (6,), (3,)],
                          dict(stride=(2, 1, 1), padding=1)),
    "channel_shuffle3d": ([(2, 6, 3, 4, 5)], dict(groups=3)),
    "cat_shuffle3d": ([(2, 2, 3, 4, 5), (2, 4, 3, 4, 5)], dict(groups=3)),
}


# Which tensors of each call are inputs, weights and biases.
CONVOLUTION_ROLES = {"input": [0], "weight": [1, 2], "bias": [3, 4]}
ROLES = {
    "depthwise_conv3d": {"input": [0], "weight": [1], "bias": [2]},
    "conv2plus1d-depthwise": CONVOLUTION_ROLES,
    "conv2plus1d-dense": CONVOLUTION_ROLES,
    "channel_shuffle3d": {"input": [0]},
    "cat_shuffle3d": {"input": [0, 1]},
}


def op_of(name: str) -> str:
    return name.split("-")[0]


def make_tensors(name, dtype=torch.float64, device="cpu", seed=0, batch=None):
    """The tensors of CALLS[name], the inputs with ``batch`` samples if given."""
    shapes, _ = CALLS[name]
    if batch is not None:
        shapes = [(batch, *shape[1:]) if i in ROLES[name]["input"] else shape for i, shape in enumerate(shapes)]
    return [randn(shape, dtype, seed + i, device) for i, shape in enumerate(shapes)]


def run(name, backend, tensors, **changes):
    """The op of CALLS[name], its keyword arguments updated by ``changes``, on ``backend`` (None:
    the PyTorch reference)."""
    op, kwargs = op_of(name), {**CALLS[name][1], **changes}
    if backend is None:
        return invoke(REFERENCES[op], op, tensors, kwargs)
    with vid3d.backend(backend):
        return invoke(getattr(ops, op), op, tensors, kwargs)


def forward_backward(name, backend, tensors, grad_seed=99, **changes):
    """Output and the gradients of every tensor, for a fixed grad_output."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    output = run(name, backend, leaves, **changes)
    grad_output = randn(output.shape, output.dtype, grad_seed, output.device)
    return output.detach(), torch.autograd.grad(output, leaves, grad_output)


# ---------------------------------------------------------------- NaN and Inf


def _with_special_values(tensor, seed):
    """tensor with a NaN, a +Inf and a -Inf at seeded random places."""
    special = tensor.clone()
    flat = special.view(-1)
    places = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))[:3]
    for place, value in zip(places.tolist(), (float("nan"), float("inf"), float("-inf"))):
        flat[place] = value
    return special


CONVOLUTIONS = ["depthwise_conv3d", "conv2plus1d-depthwise", "conv2plus1d-dense"]

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name, role", [(name, role) for name in CALLS for role in ROLES[name]],
                         ids=lambda value: value)
@pytest.mark.parametrize("backend, device", backend_params())
def test_nan_and_inf_propagate_like_pytorch(backend, device, name, role, dtype):
    """Same NaN and Inf positions (and Inf signs) as PyTorch in the output and every gradient;
    the finite values agree.

    A non-finite weight is tested without padding: where its taps meet the padding, PyTorch's own
    answer depends on the algorithm (its float64 CPU path multiplies the padding's zeros, 0 * Inf
    = NaN; its float32 oneDNN path skips them), and so does vid3d's."""
    tensors = make_tensors(name, dtype, device)
    changes = dict(padding=0) if role == "weight" else {}
    for seed in range(3):
        for i in ROLES[name][role]:
            tensors[i] = _with_special_values(tensors[i], seed + 10 * i)
        expected, expected_grads = forward_backward(name, None, tensors, **changes)
        output, grads = forward_backward(name, backend, tensors, **changes)
        tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
        torch.testing.assert_close(output, expected, equal_nan=True, **tolerance, msg=lambda m: f"output: {m}")
        for i, (grad, expected_grad) in enumerate(zip(grads, expected_grads)):
            torch.testing.assert_close(grad, expected_grad, equal_nan=True, **tolerance,
                                       msg=lambda m: f"gradient {i}: {m}")


def _gradient(backend, grad_of, x, w, **kwargs):
    leaves = [x.clone().requires_grad_(grad_of == "input"), w.clone().requires_grad_(grad_of == "weight")]
    with vid3d.backend(backend) if backend else torch.enable_grad():
        y = (ops.depthwise_conv3d if backend else REFERENCES["depthwise_conv3d"])(*leaves, **kwargs)
    (grad,) = torch.autograd.grad(y, [leaves[0 if grad_of == "input" else 1]], torch.ones_like(y))
    return grad


NONFINITE_CASES = {
    # input [0, Inf] and weight [1, 1] (1x1x2): weight tap 0 never meets the Inf: PyTorch [0, Inf].
    "weight": ([0.0, float("inf")], [1.0, 1.0]),
    # input [1, 1, 1] and weight [1, Inf]: input 0 meets only tap 0: PyTorch [1, Inf, Inf].
    "input": ([1.0, 1.0, 1.0], [1.0, float("inf")]),
}


@pytest.mark.parametrize("grad_of", NONFINITE_CASES)
@pytest.mark.parametrize("backend, device", backend_params())
def test_gradients_add_no_out_of_range_terms(backend, device, grad_of):
    """Found by the test above: the backward multiplied grad_output's out-of-range (zero) entries
    with the weight (input gradient; CPU and Triton) or the input (weight gradient; CPU), and
    0 * Inf gave NaN where PyTorch adds nothing."""
    x, w = (torch.tensor(v, dtype=torch.float64, device=device).view(1, 1, 1, 1, -1) for v in NONFINITE_CASES[grad_of])
    torch.testing.assert_close(_gradient(backend, grad_of, x, w), _gradient(None, grad_of, x, w))


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("backend, device", backend_params())
def test_activation_keeps_nan(backend, device, activation):
    """Found by the NaN/Inf test: Triton's fused ReLU/ReLU6 (tl.maximum) turned NaN into 0."""
    nan, one = (torch.full((1, 1, 1, 1, 1), v, dtype=torch.float64, device=device) for v in (float("nan"), 1.0))
    with vid3d.backend(backend):
        assert ops.depthwise_conv3d(nan, one, activation=activation).isnan().all()
        if activation == "relu":
            assert ops.conv2plus1d(nan, one, one, mid_activation="relu").isnan().all()


# ---------------------------------------------------------------- determinism


@pytest.fixture
def deterministic_algorithms():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("backend, device", backend_params())
def test_backward_is_bitwise_repeatable(backend, device, name, deterministic_algorithms):
    """float32 (sums in float32 change with their order). vid3d's CPU kernels also across thread
    counts, with a batch large enough to be split between threads; the dense stages of
    conv2plus1d run ATen's convolution, whose CPU sums change with the thread count."""
    batch = 16 if device == "cpu" and backend == "cpu" else 2
    tensors = make_tensors(name, torch.float32, device, batch=batch)
    threads = torch.get_num_threads()
    counts = [1, max(2, threads), 1] if device == "cpu" and name != "conv2plus1d-dense" else [threads] * 3
    runs = []
    try:
        for count in counts:
            torch.set_num_threads(count)
            runs.append(forward_backward(name, backend, tensors))
    finally:
        torch.set_num_threads(threads)
    first_output, first_grads = runs[0]
    for output, grads in runs[1:]:
        assert torch.equal(output, first_output)
        for grad, first_grad in zip(grads, first_grads):
            assert torch.equal(grad, first_grad)


# ---------------------------------------------------------------- threads


def test_threads_with_their_own_backends_get_right_answers(monkeypatch):
    """4 threads at once, each in its own vid3d.backend block, starting on empty kernel caches:
    every answer right, every kernel set looked up the one of the thread's backend."""
    triton_usable = _kernels.unavailable_reason("triton", torch.device("cpu")) is None
    backends = ["cpu", "torch", "auto", "triton" if triton_usable else "cpu"]
    inputs = {name: make_tensors(name) for name in CALLS}
    expected = {name: forward_backward(name, None, inputs[name]) for name in CALLS}
    lookups = []  # (thread's backend, kernel set looked up)
    real_kernels = _kernels.kernels

    def spying_kernels(name):
        lookups.append((vid3d.get_backend(), name))
        return real_kernels(name)

    monkeypatch.setattr(_custom_ops, "kernels", spying_kernels)
    _kernels._native_kernels.cache_clear()
    _kernels._triton_kernels.cache_clear()
    start, failures = threading.Barrier(len(backends)), []

    def work(backend):
        try:
            with vid3d.backend(backend):
                start.wait()
                for _ in range(3 if backend == "triton" else 20):
                    for name in CALLS:
                        output, grads = forward_backward(name, backend, inputs[name])
                        assert vid3d.get_backend() == backend
                        torch.testing.assert_close(output, expected[name][0])
                        for grad, expected_grad in zip(grads, expected[name][1]):
                            torch.testing.assert_close(grad, expected_grad)
        except BaseException as error:  # reported by the main thread
            failures.append((backend, error))

    workers = [threading.Thread(target=work, args=(backend,)) for backend in backends]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures, failures
    allowed = {"cpu": {"cpu"}, "torch": set(), "auto": {"cpu"}, "triton": {"triton"}}
    assert all(name in allowed[backend] for backend, name in lookups), set(lookups)
    assert {backend for backend, _ in lookups} >= {"cpu", backends[-1]}


# ---------------------------------------------------------------- memory


class _MallocInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def _heap_bytes() -> int | None:
    """Bytes allocated by malloc in every arena (glibc's mallinfo2), where the CPU tensors and
    most C++ objects live; None without glibc 2.33+. Exact, unlike the resident memory, which
    does not grow while freed pages are reused."""
    mallinfo2 = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallocInfo
    info = mallinfo2()
    return info.uordblks + info.hblkhd


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("backend, device", backend_params())
def test_repeated_calls_hold_no_memory(backend, device, name):
    """2,500 calls (forward and backward) after a warm-up: no growth of the malloc heap (CPU with
    glibc; else the resident memory) or of the allocated CUDA memory (GPU), no Python objects
    piling up."""
    if backend == "triton" and device == "cpu":
        pytest.skip("Triton's interpreter is too slow for 2,500 calls; its kernels' memory is checked on the GPU")
    tensors = make_tensors(name, torch.float32, device)
    # A leaked output or gradient is 0.2-3.3 KiB a call here: 0.5-8 MiB over the loop. Without one
    # the heap grew by at most 4.2 KiB in three runs here; the resident memory moves by megabytes.
    leaves = [t.requires_grad_() for t in tensors]
    grad_output = None

    def call():
        nonlocal grad_output
        output = run(name, backend, leaves)
        if grad_output is None:
            grad_output = torch.ones_like(output)
        torch.autograd.grad(output, leaves, grad_output)

    heap = _heap_bytes() is not None

    def used():
        gc.collect()
        if device == "cuda":
            return torch.cuda.memory_allocated()
        return _heap_bytes() if heap else _resident_bytes()

    for _ in range(500):
        call()
    memory, objects = used(), len(gc.get_objects())
    for _ in range(2_500):
        call()
    growth = used() - memory
    allowed = 0 if device == "cuda" else 256 << 10 if heap else 4 << 20
    assert growth <= allowed, f"memory grew by {growth} bytes"
    assert len(gc.get_objects()) - objects <= 100


# ---------------------------------------------------------------- more than 2**31 elements
# Run by default where the memory is there (each test says how much it needs and skips with the
# reason otherwise); `-m "not huge"` leaves them out.

HUGE_SHAPE = (1, 128, 64, 512, 513)  # 2**31 + 4,194,304 elements: the last channels lie past 2**31
assert torch.Size(HUGE_SHAPE).numel() > 2**31


def _require_memory(device, needed_bytes):
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
    else:
        with open("/proc/meminfo") as meminfo:
            free = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    if free < needed_bytes + (2 << 30):
        pytest.skip(f"needs {needed_bytes / 2**30:.1f} GiB free and 2 GiB to spare, {free / 2**30:.1f} GiB available")


def _coded_values(shape, device, layout="ncdhw"):
    """uint8 values 7c + 3t + 5h + w (mod 256): every channel and position recognizable."""
    n, c, t, h, w = shape
    codes = [torch.arange(size, device=device).mul_(k).to(torch.uint8) for size, k in zip((c, t, h, w), (7, 3, 5, 1))]
    memory_format = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
    x = codes[0].view(1, c, 1, 1, 1).expand(shape).clone(memory_format=memory_format)
    return x.add_(codes[1].view(1, 1, t, 1, 1)).add_(codes[2].view(1, 1, 1, h, 1)).add_(codes[3].view(1, 1, 1, 1, w))


def _plane_plus_offsets(shape, dtype, device):
    """A random (H, W) plane plus a random offset per (N, C, T): values that differ across positions,
    frames and channels, written in one pass (normal_ over 2**31 elements took longer than the convolution)."""
    n, c, t, h, w = shape
    return randn((1, 1, 1, h, w), dtype, 0, device) + randn((n, c, t, 1, 1), dtype, 1, device)


@pytest.mark.huge
# Both layouts, each once: the planar and the channels-last copies index memory differently.
@pytest.mark.parametrize("op, layout", [("channel_shuffle3d", "channels_last_3d"), ("cat_shuffle3d", "ncdhw")])
@pytest.mark.parametrize("backend, device", backend_params())
def test_shuffles_of_more_than_2_31_elements(backend, device, op, layout):
    if backend == "triton" and device == "cpu":
        pytest.skip("Triton's interpreter would take hours over 2**31 elements")
    _require_memory(device, 2 * torch.Size(HUGE_SHAPE).numel())
    x = _coded_values(HUGE_SHAPE, device, layout)
    channels, groups = HUGE_SHAPE[1], 4
    with vid3d.backend(backend):
        if op == "channel_shuffle3d":
            y = ops.channel_shuffle3d(x, groups)
        else:  # the same channels as two tensors: the second starts at channel 32
            y = ops.cat_shuffle3d([x[:, :32], x[:, 32:]], groups)
    del x
    positions = _coded_values((1, 1, *HUGE_SHAPE[2:]), device)[0, 0]  # channel 0's codes
    for j in range(channels):
        source = (j % groups) * (channels // groups) + j // groups
        assert torch.equal(y[0, j], positions + 7 * source % 256), f"output channel {j}"  # uint8 wraps


@pytest.mark.huge
@pytest.mark.parametrize("backend, device", backend_params())
def test_depthwise_conv3d_of_more_than_2_31_elements(backend, device):
    """bfloat16 input of 2**31+ elements, stride 2: the output's last channels and frames, and the
    weight gradient (a sum over the whole input), against F.conv3d on the slices they read."""
    if backend == "triton" and device == "cpu":
        pytest.skip("Triton's interpreter would take hours over 2**31 elements")
    numel = torch.Size(HUGE_SHAPE).numel()
    _require_memory(device, 2 * numel + numel // 4)
    x = _plane_plus_offsets(HUGE_SHAPE, torch.bfloat16, device)
    w = randn((HUGE_SHAPE[1], 1, 3, 3, 3), torch.bfloat16, 1, device).requires_grad_()
    kwargs = dict(stride=2, padding=(0, 1, 1))
    with vid3d.backend(backend):
        y = ops.depthwise_conv3d(x, w, None, **kwargs)
        (grad_weight,) = torch.autograd.grad(y, [w], torch.ones_like(y))
    # The last 2 channels and output frames: input frames from 2 * (To - 2) on.
    frames = y.shape[2]
    part = x[:, -2:, 2 * (frames - 2):].double()
    expected = torch.nn.functional.conv3d(part, w[-2:].detach().double(), None, groups=2, **kwargs)
    torch.testing.assert_close(y[:, -2:, -2:].double(), expected, rtol=2e-2, atol=2e-2)
    # Every weight gradient of the last channel: sums over all of its input, the whole tensor's end.
    last = x[:, -1:].double()
    w_last = w[-1:].detach().double().requires_grad_()
    out_last = torch.nn.functional.conv3d(last, w_last, None, groups=1, **kwargs)
    (expected_grad,) = torch.autograd.grad(out_last, [w_last], torch.ones_like(out_last))
    torch.testing.assert_close(grad_weight[-1:].double(), expected_grad, rtol=2e-2, atol=1.0)
