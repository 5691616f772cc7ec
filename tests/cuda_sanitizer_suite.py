"""A reduced run of tests/test_cuda.py for compute-sanitizer (memcheck, racecheck): one case of
every kernel family, small shapes, so each launch is cheap under the sanitizer. Not collected by
pytest (run it as a script: bench/gpu_session.sh does, under each tool); exits non-zero if a check
fails. Every kernel is reached: the templated and generic forward in both layouts, the misaligned
(scalar) loads, the stride-1 input gradient (forward kernel), the transposed input gradient, the
weight/bias partial sums and their reduction, the shuffle copies (wide and element-wise) and the
fused (2+1)D pair.
"""

from __future__ import annotations

import sys
import traceback

import torch

import test_cuda as t

CALLS = [
    (t.test_depthwise_conv3d, (t.CASES[0], "ncdhw", torch.float32)),
    (t.test_depthwise_conv3d, (t.CASES[0], "channels_last_3d", torch.float16)),
    (t.test_depthwise_conv3d, (t.CASES[1], "channels_last_3d", torch.float32)),
    (t.test_depthwise_conv3d, (t.CASES[5], "ncdhw", torch.bfloat16)),
    (t.test_depthwise_conv3d, (t.CASES[9], "channels_last_3d", torch.float32)),
    (t.test_depthwise_conv3d, (t.CASES[13], "strided", torch.float32)),
    (t.test_depthwise_conv3d, (t.CASES[13], "channels_last_3d", torch.float64)),
    (t.test_depthwise_conv3d, (t.CASES[15], "ncdhw", torch.float16)),
    (t.test_misaligned_views_take_the_scalar_loads, (torch.float16, False)),
    (t.test_misaligned_views_take_the_scalar_loads, (torch.float32, True)),
    (t.test_shuffles, ((2, 4), 3, "channels_last_3d")),
    (t.test_shuffles, ((64,), 4, "ncdhw")),
    (t.test_conv2plus1d_native_fused_kernel_directly, ()),
]


def main() -> int:
    if not torch.cuda.is_available():
        print("no GPU")
        return 0
    failed = 0
    for fn, args in CALLS:
        try:
            fn(*args)
            print(f"ok   {fn.__name__}{args}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}{args}\n{traceback.format_exc()}", flush=True)
    torch.cuda.synchronize()
    print(f"{len(CALLS) - failed}/{len(CALLS)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
