"""vid3d.models.load_checkpoint: the reference checkpoint layouts, and clear, harmless failures."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

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


def _assert_refused_and_unchanged(target, checkpoint, match: str, **kwargs):
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(target, checkpoint, **kwargs)
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed by a refused checkpoint"


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


def test_truncated_files_are_refused_at_every_length(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save(_reference_style_checkpoint(_model(0), data_parallel=True), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    target = _model(1)
    for length in sorted({0, 1, 30, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1}):
        cut.write_bytes(data[:length])
        _assert_refused_and_unchanged(target, cut, "truncated or not a PyTorch checkpoint")


def test_files_that_are_not_checkpoints(tmp_path):
    target = _model(1)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    _assert_refused_and_unchanged(target, text, "truncated or not a PyTorch checkpoint")
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    _assert_refused_and_unchanged(target, tensor, "holds a Tensor, not a checkpoint dict")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(target, tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(target, tmp_path)


class _Pickled:
    """An object a full unpickle would construct (and could run code for): weights_only refuses it."""


def test_files_with_python_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": _model(0).state_dict(), "opt": _Pickled()}, path)
    _assert_refused_and_unchanged(_model(1), path, "weights_only=True")


def test_another_architectures_checkpoint_names_its_arch():
    other = models.create("mobilenet", width_mult=0.5, num_classes=7)
    checkpoint = {"arch": "mobilenet", "state_dict": other.state_dict()}
    _assert_refused_and_unchanged(_model(1), checkpoint, r"saved from arch 'mobilenet'(.|\n)*missing keys")


def test_values_that_copy_would_fail_on_part_way_are_refused_first():
    state = _model(0).state_dict()
    keys = list(state)
    # The last entries, so that a copy in key order would have loaded everything before them.
    state[keys[-1]] = state[keys[-1]].to(torch.complex64)
    state[keys[-3]] = torch.empty_like(state[keys[-3]], device="meta")
    _assert_refused_and_unchanged(_model(1), state, f"2 values that cannot be copied(.|\n)*{keys[-3]}: checkpoint "
                                  rf"{state[keys[-3]].dtype} meta \(no data\)")


def test_other_float_dtypes_are_cast_as_load_state_dict_does():
    source, target = _model(0).double(), _model(1)
    load_checkpoint(target, source.state_dict())
    assert target.classifier[1].weight.dtype == torch.float32
    torch.testing.assert_close(target.classifier[1].weight, source.classifier[1].weight.float(), rtol=0, atol=0)


_CORRUPTIONS = ("drop", "add", "reshape", "complex", "meta")


@given(corruptions=st.lists(st.tuples(st.sampled_from(_CORRUPTIONS), st.integers(0, 10**6)), max_size=4),
       strict=st.booleans(), data_parallel=st.booleans())
def test_fuzz_corrupted_state_dicts_load_fully_or_not_at_all(corruptions, strict, data_parallel):
    """Any mix of missing, extra, misshapen and uncopyable entries: either the whole checkpoint
    fits (every shared tensor copied) or a CheckpointError, with not one tensor changed."""
    source, target = _FUZZ_SOURCE, _model(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = dict(source.state_dict())
    for kind, pick in corruptions:
        key = sorted(state)[pick % len(state)] if state else None
        if kind == "drop" and key is not None:
            del state[key]
        elif kind == "add":
            state[f"extra{pick}.weight"] = torch.zeros(2)
        elif kind == "reshape" and key is not None:
            state[key] = torch.zeros(state[key].numel() + 1)
        elif kind == "complex" and key is not None and state[key].is_floating_point():
            state[key] = state[key].to(torch.complex64)
        elif kind == "meta" and key is not None:
            state[key] = torch.empty_like(state[key], device="meta")
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    try:
        load_checkpoint(target, {"state_dict": state}, strict=strict)
    except CheckpointError:
        for key, value in target.state_dict().items():
            assert torch.equal(value, before[key]), f"{key} changed by a refused checkpoint"
        return
    prefix = "module." if data_parallel and state else ""
    for key, value in target.state_dict().items():
        loaded = state.get(prefix + key)
        assert torch.equal(value, before[key] if loaded is None else loaded.to(value.dtype)), key


_FUZZ_SOURCE = _model(0)
