"""Every Triton kernel compiles for sm_80 and sm_90 (to a cubin), without a GPU.

The interpreter runs the kernels' logic; this catches what only the real compiler rejects. It runs
in a subprocess because kernels decorated under TRITON_INTERPRET=1 (as in this test session) can
only be interpreted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

triton = pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from vid3d.kernels import channel_shuffle, conv2plus1d, depthwise_conv3d

    taps = dict(KT=3, KH=3, KW=3)
    tile = dict(BLOCK_P=64, BLOCK_C=16)
    kernels = [
        (depthwise_conv3d._forward_kernel, "fp16",
         dict(taps, HAS_BIAS=True, ACTIVATION=2, ACC=tl.float32, **tile)),
        (depthwise_conv3d._input_grad_kernel, "bf16", dict(taps, ACC=tl.float32, **tile)),
        (depthwise_conv3d._param_grad_kernel, "fp32",
         dict(taps, WANT_WEIGHT=True, WANT_BIAS=True, ACC=tl.float32, **tile)),
        (conv2plus1d._depthwise_pair_kernel, "fp32",
         dict(taps, HAS_SPATIAL_BIAS=True, HAS_TEMPORAL_BIAS=True, RELU=True, ACC=tl.float32, **tile)),
        (channel_shuffle._copy_channels_kernel, "i16", dict(tile)),
    ]
    for fn, element, constexprs in kernels:
        signature = {}
        for name in fn.arg_names:
            if name in constexprs:
                signature[name] = "constexpr"
            elif name.endswith("_ch_ptr"):
                signature[name] = "*i32"
            elif name.endswith("_part_ptr"):
                signature[name] = "*fp32"
            elif name.endswith("_ptr"):
                signature[name] = "*" + element
            else:
                signature[name] = "i64"
        index = {name: (i,) for i, name in enumerate(fn.arg_names)}
        source = ASTSource(fn=fn, signature=signature, constexprs={index[k]: v for k, v in constexprs.items()})
        for arch in (80, 90):
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32))
            assert compiled.asm["cubin"], (fn.__name__, arch)
            print("compiled", fn.__name__, f"sm_{arch}")
    """
)


def test_triton_kernels_compile_for_sm80_and_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("compiled") == 10
