"""vid3d.models.load_checkpoint: the reference checkpoint layouts, and clear, harmless failures."""

from __future__ import annotations

import pytest
import torch

from _helpers import one_intra_op_thread

from vid3d import models
from vid3d.models import load_checkpoint
from vid3d.models._checkpoint import CheckpointError


one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)


def _model(seed: int, **kwargs):
    torch.manual_seed(seed)
    return models.create("shufflenet", groups=3, width_mult=0.5, num_classes=7, **kwargs).eval()


def _reference_style_checkpoint(model, data_parallel: bool) -> dict:
    """What the reference training scripts save: a dict with the (DataParallel) state_dict inside."""
    state = model.state_dict()
    if data_parallel:
        state = {f"module.{key}": value for key, value in state.items()}
    return {"epoch": 12, "arch": "shufflenet", "state_dict": state, "optimizer": {"state": {}, "param_groups": []},
            "best_prec1": 0.41}


def _assert_same_state(a, b):
    for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), key


@pytest.mark.parametrize("layout", ["bare", "bare-module", "wrapped", "wrapped-module"])
def test_loads_every_layout_from_dicts_and_files(layout, tmp_path):
    source, target = _model(0), _model(1)
    if layout.startswith("bare"):
        checkpoint = source.state_dict()
        if layout.endswith("module"):
            checkpoint = {f"module.{key}": value for key, value in checkpoint.items()}
    else:
        checkpoint = _reference_style_checkpoint(source, data_parallel=layout.endswith("module"))
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    for given in (checkpoint, path, str(path)):
        target = _model(1)
        assert load_checkpoint(target, given) is target
        _assert_same_state(source, target)
        x = torch.randn(1, 3, 16, 48, 48)
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_checkpoints_without_batchnorm_counters_load():
    # PyTorch < 0.4.1 (the 2017-2018 checkpoints) saved no num_batches_tracked.
    source, target = _model(0), _model(1)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_checkpoint(target, {"state_dict": state})
    _assert_same_state(source, target)


def test_wrong_checkpoint_is_reported_in_full_and_leaves_the_model_unchanged():
    target = _model(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    wrong = models.create("shufflenet", groups=3, width_mult=1.0, num_classes=7).state_dict()
    wrong["extra.weight"] = torch.zeros(1)
    del wrong["classifier.1.bias"]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target, {"state_dict": wrong})
    message = str(info.value)
    assert "missing keys:\n  classifier.1.bias" in message
    assert "unexpected keys:\n  extra.weight" in message
    assert "shape mismatches" in message
    assert "conv1.0.weight: checkpoint (24, 3, 3, 3, 3), model (12, 3, 3, 3, 3)" in message
    # Validation happens before any copy: not one tensor changed.
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_non_strict_loads_the_overlap_and_warns():
    source, target = _model(0), _model(1)
    state = source.state_dict()
    del state["classifier.1.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.warns(UserWarning, match="missing keys"):
        load_checkpoint(target, state, strict=False)
    assert torch.equal(target.classifier[1].weight, source.classifier[1].weight)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(_model(1), _model(0).state_dict() | {"classifier.1.bias": torch.zeros(3)}, strict=False)


def test_not_a_checkpoint():
    with pytest.raises(CheckpointError, match="neither a state_dict"):
        load_checkpoint(_model(0), {"epoch": 3, "arch": "shufflenet"})
    with pytest.raises(TypeError, match="path or a dict"):
        load_checkpoint(_model(0), 42)
    with pytest.raises(TypeError, match="nn.Module"):
        load_checkpoint("model", {})
