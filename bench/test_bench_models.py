"""Model benchmarks for pytest-benchmark: the default models of `vid3d bench`, one inference
pass (batch 8) and one training step, in plain PyTorch and on vid3d's kernels."""

import pytest
import torch

from vid3d.benchmark import models

from vid3d.benchmark.timing import synchronized


@pytest.mark.parametrize("impl", ["torch-eager", "vid3d"])
@pytest.mark.parametrize("mode", models.MODES)
@pytest.mark.parametrize("spec", models.DEFAULT_MODELS, ids=lambda s: s.label())
def test_model(benchmark, device, spec, mode, impl):
    batch = models.default_batches(device)[mode]
    model = models.create_model(spec, device)
    module, backend = {name: (m, b) for name, b, m in models.impls(model, mode, compile_torch=False)}[impl]
    clips = [torch.randn(batch, *models.CLIP, device=device)]
    labels = torch.randint(models.NUM_CLASSES, (batch,), device=device)
    run = models.runner(module, mode, backend, clips, labels, torch.float32)
    benchmark.pedantic(synchronized(lambda: run(0), device), rounds=3, warmup_rounds=1)
