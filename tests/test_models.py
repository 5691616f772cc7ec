"""vid3d.models: every registered model builds, runs, trains, and has the reference state_dict."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vid3d
from vid3d import models

from _helpers import one_intra_op_thread

SNAPSHOTS = Path(__file__).parent / "snapshots"
NUM_CLASSES = 5
SMALL = (3, 4, 16, 16)

# Per-name keywords and clip for the forward/training tests: about the smallest clip each
# architecture takes (the references size some heads from sample_size/sample_duration).
_SIZED_FOR_SMALL = {"sample_size": 16, "sample_duration": 4}
SMALL_CASES = {
    "squeezenet": (_SIZED_FOR_SMALL, SMALL),
    "shufflenet": ({}, (3, 16, 48, 48)),  # its stride-2 shortcuts pool 2x3x3 (unpadded in time) three times
    "c3d": ({"sample_size": 16, "sample_duration": 16}, (3, 16, 16, 16)),  # 16 frames at least
    "s3d": ({}, (3, 8, 32, 32)),
    "s3d_v3": ({}, (3, 16, 64, 64)),  # two unpadded spatial reductions
    **{f"densenet{d}": ({}, (3, 16, 32, 32)) for d in (121, 169, 201, 264)},  # four unpadded /2 steps
    **{f"efficient_resnet{d}": (_SIZED_FOR_SMALL, SMALL) for d in (10, 18, 34, 50, 101, 152, 200)},
    **{f"efficient_resnext{d}": (_SIZED_FOR_SMALL, SMALL) for d in (50, 101, 152)},
}
# The largest models (150+ layers, or 250M+ parameters) only run forward, at batch 1, to keep the
# suite short on a CPU; their training step is the same code as their smaller siblings', and
# their structure is covered by the state_dict snapshots.
FORWARD_ONLY = {name for name in models.list_models()
                if any(name.endswith(str(d)) for d in (152, 200, 264)) or name == "wide_resnet101"}


one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)


def small_case(name: str, kwargs: dict | None = None) -> tuple[dict, tuple[int, ...]]:
    """Keywords and clip for ``name``; ``kwargs`` override the case's keywords."""
    case_kwargs, clip = SMALL_CASES.get(name, ({}, SMALL))
    kwargs = {**case_kwargs, **(kwargs or {})}
    return kwargs, (kwargs.get("n_input_channels", 3), *clip[1:])


def test_list_models_has_every_family():
    names = set(models.list_models())
    expected = {
        "mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "squeezenet", "c3d",
        *(f"efficient_resnet{d}" for d in (10, 18, 34, 50, 101, 152, 200)),
        *(f"efficient_resnext{d}" for d in (50, 101, 152)),
        *(f"resnet{d}" for d in (10, 18, 34, 50, 101, 152, 200)),
        *(f"resnet2p1d_{d}" for d in (10, 18, 34, 50, 101, 152, 200)),
        *(f"preact_resnet{d}" for d in (10, 18, 34, 50, 101, 152, 200)),
        "wide_resnet50", *(f"resnext{d}" for d in (50, 101, 152, 200)),
        *(f"densenet{d}" for d in (121, 169, 201, 264)),
        "sevnet", "s3d", "s3d_v3",
    }
    assert expected <= names


@pytest.mark.parametrize("name", sorted(set(models.list_models()) - FORWARD_ONLY))
def test_forward_and_training_step(name):
    torch.manual_seed(0)
    kwargs, clip = small_case(name)
    model = models.create(name, num_classes=NUM_CLASSES, **kwargs)
    x = torch.randn(2, *clip)  # batch 2: BatchNorm needs two values per channel in training
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all()
    out = model.train()(x)
    assert out.shape == (2, NUM_CLASSES)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(out, torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed > len(before) // 2, f"only {changed} of {len(before)} parameters moved"


@pytest.mark.parametrize("name", sorted(FORWARD_ONLY))
def test_forward_largest_models(name):
    kwargs, clip = small_case(name)
    model = models.create(name, num_classes=NUM_CLASSES, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *clip))
    assert out.shape == (1, NUM_CLASSES) and torch.isfinite(out).all()


# Keyword variants the papers use: every width of Table 8, every ShuffleNet group count, both
# SqueezeNet versions, both shortcut types.
VARIANTS = [
    *(("shufflenet", {"groups": g, "width_mult": w}) for g in (1, 2, 3, 4, 8) for w in (1.0,)),
    *(("shufflenet", {"groups": 3, "width_mult": w}) for w in (0.5, 1.5, 2.0)),
    *(("shufflenetv2", {"width_mult": w}) for w in (0.25, 0.5, 1.5, 2.0)),
    *(("mobilenet", {"width_mult": w}) for w in (0.5, 1.5, 2.0)),
    *(("mobilenetv2", {"width_mult": w}) for w in (0.2, 0.45, 0.7)),
    ("squeezenet", {"version": 1.0}),
    ("efficient_resnet18", {"shortcut_type": "A"}),
    ("efficient_resnet50", {"shortcut_type": "A"}),
    ("resnet18", {"shortcut_type": "A", "conv1_t_size": 3, "conv1_t_stride": 2, "no_max_pool": True}),
    ("resnet2p1d_18", {"shortcut_type": "A", "n_input_channels": 2, "widen_factor": 0.5}),
    ("preact_resnet50", {"shortcut_type": "A", "widen_factor": 0.5}),
    ("resnext50", {"cardinality": 16}),
    ("wide_resnet50", {"k": 1}),
    ("densenet121", {"no_max_pool": True, "drop_rate": 0.2}),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=lambda v: v if isinstance(v, str) else
                         "-".join(f"{k}={x}" for k, x in v.items()))
def test_variants_forward(name, kwargs):
    kwargs, clip = small_case(name, kwargs)
    model = models.create(name, num_classes=NUM_CLASSES, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *clip))
    assert out.shape == (1, NUM_CLASSES) and torch.isfinite(out).all()


def test_create_rejects_unknown_names_and_keywords():
    with pytest.raises(ValueError, match="did you mean.*shufflenet"):
        models.create("shufflenett")
    with pytest.raises(TypeError, match="unexpected keyword.*n_classes.*accepts"):
        models.create("resnet18", n_classes=10)
    with pytest.raises(ValueError, match="groups must be one of"):
        models.create("shufflenet", groups=5)
    with pytest.raises(ValueError, match="width_mult must be one of"):
        models.create("shufflenetv2", width_mult=0.75)
    with pytest.raises(ValueError, match="sample_size must be a multiple of 16"):
        models.create("mobilenetv2", sample_size=100)
    with pytest.raises(ValueError, match="shortcut_type"):
        models.create("resnet18", shortcut_type="C")
    with pytest.raises(ValueError, match="version"):
        models.create("squeezenet", version=1.2)


def test_model_sources():
    assert models.model_source("shufflenetv2") == "Efficient-3DCNNs"
    assert models.model_source("efficient_resnext101") == "Efficient-3DCNNs"
    assert models.model_source("resnet2p1d_18") == "3D-ResNets-PyTorch"
    assert models.model_source("s3d_v3") == "reconstruction"


def test_model_keywords_are_the_reference_names():
    assert list(models.model_keywords("shufflenet")) == ["groups", "width_mult", "num_classes"]
    assert set(models.model_keywords("resnet50")) == {
        "n_input_channels", "conv1_t_size", "conv1_t_stride", "no_max_pool", "shortcut_type", "widen_factor",
        "num_classes"}
    assert set(models.model_keywords("efficient_resnext101")) == {
        "sample_size", "sample_duration", "shortcut_type", "cardinality", "num_classes"}
    assert set(models.model_keywords("squeezenet")) == {"sample_size", "sample_duration", "version", "num_classes"}


# ---- state_dict snapshots -------------------------------------------------------------------

def _family(name: str) -> str:
    for prefix in ("efficient_resnext", "efficient_resnet", "resnet2p1d", "preact_resnet", "wide_resnet", "resnext",
                   "densenet", "resnet", "shufflenetv2", "shufflenet", "mobilenetv2", "mobilenet"):
        if name.startswith(prefix):
            return prefix
    return name


def _key_shapes(model) -> list[tuple[str, tuple[int, ...]]]:
    return sorted((key, tuple(value.shape)) for key, value in model.state_dict().items())


def _lines(key_shapes) -> list[str]:
    return [f"{key} {list(shape)}" for key, shape in key_shapes]


def _digest(key_shapes) -> str:
    return hashlib.sha256("\n".join(_lines(key_shapes)).encode()).hexdigest()


# The configurations whose state_dicts are snapshotted: every name at its defaults, plus the
# Table 8 widths and the ShuffleNet group counts.
SNAPSHOT_CASES = [(name, {}) for name in models.list_models()] + [
    (name, kwargs) for name, kwargs in VARIANTS if name in ("shufflenet", "shufflenetv2", "mobilenet", "mobilenetv2")
]


def _case_id(name: str, kwargs: dict) -> str:
    return name + "".join(f",{k}={v}" for k, v in sorted(kwargs.items()))


def _snapshot_file(family: str) -> Path:
    return SNAPSHOTS / f"{family}.json"


def _build_on_meta(name, kwargs):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return models.create(name, **kwargs)


@pytest.mark.parametrize("name,kwargs", SNAPSHOT_CASES, ids=[_case_id(n, k) for n, k in SNAPSHOT_CASES])
def test_state_dict_matches_snapshot(name, kwargs):
    key_shapes = _key_shapes(_build_on_meta(name, kwargs))
    path = _snapshot_file(_family(name))
    snapshot = json.loads(path.read_text()) if path.exists() else {}
    case = _case_id(name, kwargs)
    # The digest covers every (key, shape); a few keys are spelled out so a diff shows what moved.
    record = {"keys": len(key_shapes), "sha256": _digest(key_shapes), "sample": _lines(key_shapes[::50])}
    if os.environ.get("VID3D_UPDATE_SNAPSHOTS"):
        snapshot[case] = record
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(dict(sorted(snapshot.items())), indent=1) + "\n")
    assert case in snapshot, f"no snapshot for {case}; run with VID3D_UPDATE_SNAPSHOTS=1 after checking the keys"
    assert record == snapshot[case]


# Keys and shapes read off the reference code (file named per family), default keywords unless given.
REFERENCE_KEYS = {
    # Efficient-3DCNNs models/mobilenet.py: features.0 = conv_bn, blocks conv1 (dw)/bn1/conv2 (pw)/bn2.
    ("mobilenet", ()): {"features.0.0.weight": (32, 3, 3, 3, 3), "features.1.conv1.weight": (32, 1, 3, 3, 3),
                        "features.1.conv2.weight": (64, 32, 1, 1, 1), "features.13.bn2.running_var": (1024,),
                        "classifier.1.weight": (600, 1024)},
    # models/mobilenetv2.py: t=1 block conv.0/1/3/4, others conv.0/1/3/4/6/7, features.18 to 1280.
    ("mobilenetv2", ()): {"features.1.conv.0.weight": (32, 1, 3, 3, 3), "features.1.conv.3.weight": (16, 32, 1, 1, 1),
                          "features.2.conv.0.weight": (96, 16, 1, 1, 1), "features.2.conv.3.weight": (96, 1, 3, 3, 3),
                          "features.2.conv.7.bias": (24,), "features.18.0.weight": (1280, 320, 1, 1, 1),
                          "classifier.1.weight": (1000, 1280)},
    ("mobilenetv2", (("width_mult", 0.45),)): {"features.0.0.weight": (14, 3, 3, 3, 3),
                                               "features.18.0.weight": (1280, 144, 1, 1, 1)},
    # models/shufflenet.py: groups 3 widths 24/240/480/960; first block's conv1 ungrouped (in 24).
    ("shufflenet", ()): {"conv1.0.weight": (24, 3, 3, 3, 3), "layer1.0.conv1.weight": (60, 24, 1, 1, 1),
                         "layer1.0.conv2.weight": (60, 1, 3, 3, 3), "layer1.0.conv3.weight": (216, 20, 1, 1, 1),
                         "layer1.1.conv1.weight": (60, 80, 1, 1, 1), "layer3.3.bn3.weight": (960,),
                         "classifier.1.weight": (400, 960)},
    ("shufflenet", (("groups", 1),)): {"layer3.3.conv3.weight": (567, 141, 1, 1, 1)},
    # models/shufflenetv2.py: the banch1/banch2 spelling; banch2 0/1/3/4/5/6, banch1 0/1/2/3.
    ("shufflenetv2", ()): {"conv1.0.weight": (24, 3, 3, 3, 3), "features.0.banch1.0.weight": (24, 1, 3, 3, 3),
                           "features.0.banch1.2.weight": (58, 24, 1, 1, 1),
                           "features.0.banch2.0.weight": (58, 24, 1, 1, 1),
                           "features.0.banch2.3.weight": (58, 1, 3, 3, 3),
                           "features.1.banch2.5.weight": (58, 58, 1, 1, 1),
                           "features.15.banch2.6.running_mean": (232,), "conv_last.0.weight": (1024, 464, 1, 1, 1),
                           "classifier.1.weight": (600, 1024)},
    ("shufflenetv2", (("width_mult", 2.0),)): {"features.0.banch2.0.weight": (112, 24, 1, 1, 1),
                                              "conv_last.0.weight": (2048, 976, 1, 1, 1)},
    # models/squeezenet.py (1.1): stem conv with bias, Fire at features.4.
    ("squeezenet", ()): {"features.0.weight": (64, 3, 3, 3, 3), "features.0.bias": (64,),
                         "features.4.squeeze.weight": (16, 64, 1, 1, 1), "features.4.expand3x3_bn.weight": (64,),
                         "features.13.expand3x3.weight": (256, 64, 3, 3, 3),
                         "classifier.1.weight": (600, 512, 1, 1, 1)},
    # models/c3d.py
    ("c3d", ()): {"group1.0.weight": (64, 3, 3, 3, 3), "group3.3.weight": (256, 256, 3, 3, 3),
                  "group5.4.running_var": (512,), "fc1.0.weight": (4096, 8192), "fc2.0.bias": (4096,),
                  "fc.0.weight": (600, 4096)},
    # Efficient-3DCNNs models/resnet.py and resnext.py.
    ("efficient_resnet18", ()): {"conv1.weight": (64, 3, 7, 7, 7), "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
                                 "layer4.1.bn2.weight": (512,), "fc.weight": (400, 512)},
    ("efficient_resnext101", ()): {"conv1.weight": (64, 3, 7, 7, 7), "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
                                   "layer1.0.conv2.weight": (128, 4, 3, 3, 3),
                                   "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
                                   "layer4.2.conv2.weight": (1024, 32, 3, 3, 3), "fc.weight": (400, 2048)},
    # 3D-ResNets-PyTorch models/resnet.py, resnet2p1d.py, wide_resnet.py, resnext.py, densenet.py.
    ("resnet50", ()): {"conv1.weight": (64, 3, 7, 7, 7), "layer1.0.downsample.0.weight": (256, 64, 1, 1, 1),
                       "layer4.2.conv3.weight": (2048, 512, 1, 1, 1), "fc.weight": (400, 2048)},
    ("resnet2p1d_18", ()): {"conv1_s.weight": (110, 3, 1, 7, 7), "conv1_t.weight": (64, 110, 7, 1, 1),
                            "layer1.0.conv1_s.weight": (144, 64, 1, 3, 3),
                            "layer1.0.conv1_t.weight": (64, 144, 3, 1, 1),
                            "layer2.0.conv1_s.weight": (230, 64, 1, 3, 3), "layer2.0.bn2_t.weight": (128,)},
    ("resnet2p1d_50", ()): {"layer1.0.conv2_s.weight": (144, 64, 1, 3, 3), "layer1.0.conv3.weight": (256, 64, 1, 1, 1)},
    ("preact_resnet18", ()): {"layer1.0.bn1.weight": (64,), "layer1.0.conv1.weight": (64, 64, 3, 3, 3),
                              "layer2.0.bn1.weight": (64,), "layer2.0.downsample.1.weight": (128,)},
    ("wide_resnet50", ()): {"conv1.weight": (128, 3, 7, 7, 7), "layer1.0.conv1.weight": (128, 128, 1, 1, 1),
                            "layer1.0.conv3.weight": (256, 128, 1, 1, 1), "fc.weight": (400, 2048)},
    ("resnext101", ()): {"conv1.weight": (128, 3, 7, 7, 7), "layer1.0.conv2.weight": (128, 4, 3, 3, 3),
                         "layer1.0.downsample.0.weight": (256, 128, 1, 1, 1), "fc.weight": (400, 2048)},
    ("densenet121", ()): {"features.conv1.weight": (64, 3, 7, 7, 7), "features.norm1.weight": (64,),
                          "features.denseblock1.denselayer1.conv1.weight": (128, 64, 1, 1, 1),
                          "features.denseblock1.denselayer6.conv2.weight": (32, 128, 3, 3, 3),
                          "features.transition1.conv.weight": (128, 256, 1, 1, 1),
                          "features.norm5.weight": (1024,), "classifier.weight": (1000, 1024)},
}


@pytest.mark.parametrize("case", list(REFERENCE_KEYS), ids=lambda c: _case_id(c[0], dict(c[1])))
def test_reference_keys(case):
    name, kwargs = case
    state = _build_on_meta(name, dict(kwargs)).state_dict()
    for key, shape in REFERENCE_KEYS[case].items():
        assert key in state, f"{key} missing from {name}"
        assert tuple(state[key].shape) == shape, key


def test_batchnorm_counters_are_in_the_state_dict():
    # Checkpoints saved by PyTorch >= 0.4.1 have them; load_checkpoint accepts their absence.
    assert "features.1.bn1.num_batches_tracked" in _build_on_meta("mobilenet", {}).state_dict()


# ---- vid3d ops inside the models: same numbers as the pure PyTorch path --------------------

@pytest.mark.parametrize("name,kwargs", [("shufflenet", {"groups": 3}),
                                         ("shufflenet", {"groups": 3, "width_mult": 0.5}),
                                         ("shufflenetv2", {"width_mult": 0.5})])
def test_vid3d_ops_match_pure_pytorch(name, kwargs):
    torch.manual_seed(0)
    model = models.create(name, num_classes=NUM_CLASSES, **kwargs).double().eval()
    _, clip = small_case(name)
    x = torch.randn(2, *clip, dtype=torch.float64, requires_grad=True)
    results = {}
    for backend in ("torch", "cpu"):
        with vid3d.backend(backend):
            out = model(x)
            grad, = torch.autograd.grad(out.square().sum(), x)
        results[backend] = (out, grad)
    torch.testing.assert_close(results["cpu"][0], results["torch"][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results["cpu"][1], results["torch"][1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, block, convs", [("efficient_resnet10", "layer2.0", 2), ("resnet50", "layer1.0", 3),
                                                ("resnet2p1d_18", "layer2.0", 0)])
def test_blocks_list_parameters_in_the_reference_order(name, block, convs):
    """Saved optimizer states index parameters by position, so the shortcut must come last, as in the references."""
    with torch.device("meta"):
        model = models.create(name, shortcut_type="B")
    names = [n.removeprefix(block + ".") for n, _ in model.named_parameters() if n.startswith(block + ".")]
    assert names[-3:] == ["downsample.0.weight", "downsample.1.weight", "downsample.1.bias"]
    if convs:
        expected = [f"{kind}{i}.{p}" for i in range(1, convs + 1)
                    for kind, params in (("conv", ("weight",)), ("bn", ("weight", "bias"))) for p in params]
        assert names[:-3] == expected
