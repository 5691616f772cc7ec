"""The architectures of the papers, with the reference implementations' state_dicts.

``create(name, **kwargs)`` builds a model by name with the reference constructor's keywords;
``list_models()`` lists the names; ``load_checkpoint(model, path_or_dict)`` loads the reference
checkpoints. Families (names, keywords):

* Efficient-3DCNNs (okankop/Efficient-3DCNNs): ``mobilenet``, ``mobilenetv2``
  (``width_mult, num_classes, sample_size``), ``shufflenet`` (``groups, width_mult, num_classes``),
  ``shufflenetv2`` (``width_mult, num_classes, sample_size``), ``squeezenet`` (``version,
  sample_size, sample_duration, num_classes``), ``c3d`` (``sample_size, sample_duration,
  num_classes``), ``efficient_resnet{10,18,34,50,101,152,200}`` and
  ``efficient_resnext{50,101,152}`` (``sample_size, sample_duration, shortcut_type,
  [cardinality,] num_classes``). The ``efficient_`` prefix keeps them apart from
  3D-ResNets-PyTorch's 2020 models of the same depth (different stems, pooling and keywords);
  they are also the 2017-2018 3D-ResNets-PyTorch models, whose checkpoints they load.
* 3D-ResNets-PyTorch (kenshohara/3D-ResNets-PyTorch, 2020 code): ``resnet{10,...,200}``,
  ``resnet2p1d_{10,...,200}``, ``preact_resnet{10,...,200}``, ``wide_resnet{50,101,152,200}``
  (``k``), ``resnext{50,101,152,200}`` (``cardinality``), with ``n_input_channels,
  conv1_t_size, conv1_t_stride, no_max_pool, shortcut_type, widen_factor`` (not for ResNeXt,
  as in the reference) and ``num_classes`` (the reference's ``n_classes``);
  ``densenet{121,169,201,264}`` (``n_input_channels, conv1_t_size, conv1_t_stride,
  no_max_pool, bn_size, drop_rate, num_classes``).
* Documented reconstructions (no reference code): ``sevnet``, ``s3d``, ``s3d_v3``.
"""

from __future__ import annotations

from torch import nn

from ..convert import convert
from . import _registry
from ._checkpoint import CheckpointError, load_checkpoint
from ._spec import ModelSpec
from .c3d import c3d
from .densenet import BLOCK_CONFIGS, densenet
from .mobilenet import mobilenet
from .mobilenetv2 import mobilenetv2
from .resnet import DEPTHS, efficient_resnet, efficient_resnext, preact_resnet, resnet, resnext, wide_resnet
from .resnet2p1d import resnet2p1d
from .s3d import s3d, s3d_v3
from .sevnet import sevnet
from .shufflenet import shufflenet
from .shufflenetv2 import shufflenetv2
from .squeezenet import squeezenet

__all__ = ["CheckpointError", "ModelSpec", "create", "list_models", "load_checkpoint", "model_keywords", "model_source"]

_EFFICIENT = "Efficient-3DCNNs"
_KENSHOHARA = "3D-ResNets-PyTorch"
_RECONSTRUCTION = "reconstruction"

for _name, _builder in (("mobilenet", mobilenet), ("mobilenetv2", mobilenetv2), ("shufflenet", shufflenet),
                        ("shufflenetv2", shufflenetv2), ("squeezenet", squeezenet), ("c3d", c3d)):
    _registry.register(_name, _builder, _EFFICIENT)
for _depth in DEPTHS:
    _registry.register(f"efficient_resnet{_depth}", efficient_resnet, _EFFICIENT, depth=_depth)
for _depth in (50, 101, 152):
    _registry.register(f"efficient_resnext{_depth}", efficient_resnext, _EFFICIENT, depth=_depth)
for _depth in DEPTHS:
    _registry.register(f"resnet{_depth}", resnet, _KENSHOHARA, depth=_depth)
for _depth in DEPTHS:
    _registry.register(f"resnet2p1d_{_depth}", resnet2p1d, _KENSHOHARA, depth=_depth)
for _depth in DEPTHS:
    _registry.register(f"preact_resnet{_depth}", preact_resnet, _KENSHOHARA, depth=_depth)
for _depth in (50, 101, 152, 200):
    _registry.register(f"wide_resnet{_depth}", wide_resnet, _KENSHOHARA, depth=_depth)
for _depth in (50, 101, 152, 200):
    _registry.register(f"resnext{_depth}", resnext, _KENSHOHARA, depth=_depth)
for _depth in BLOCK_CONFIGS:
    _registry.register(f"densenet{_depth}", densenet, _KENSHOHARA, depth=_depth)
for _name, _builder in (("sevnet", sevnet), ("s3d", s3d), ("s3d_v3", s3d_v3)):
    _registry.register(_name, _builder, _RECONSTRUCTION)


def list_models() -> list[str]:
    """Every name :func:`create` accepts, grouped by family."""
    return _registry.names()


def model_keywords(name: str) -> dict[str, object]:
    """The keywords ``create(name, ...)`` accepts, with their defaults."""
    return _registry.entry(name).keywords()


def model_source(name: str) -> str:
    """Where ``name`` comes from: "Efficient-3DCNNs", "3D-ResNets-PyTorch" or "reconstruction"."""
    return _registry.entry(name).source


def create(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with the reference constructor's keywords.

    Raises ``ValueError`` for an unknown name (with close matches) and ``TypeError`` for a keyword
    the model does not take (with the list it takes). See :func:`list_models` and
    :func:`model_keywords`.
    """
    model = _registry.build(name, kwargs)
    return _finished(model)


def _finished(model: nn.Module) -> nn.Module:
    """The one place every model passes on its way out of :func:`create`.

    The models are built from plain ``torch.nn`` layers plus vid3d's functional shuffles, so their
    state_dicts are the references'; :func:`vid3d.convert` then swaps vid3d's modules in (same
    parameters, same keys), so the depthwise convs run on vid3d's kernels.
    """
    return convert(model)
