"""The network: MONAI's 3D DenseNet-169 configured as in Kim et al. 2025.

Growth rate 32, blocks (6, 12, 32, 32), bottleneck 4, 64 initial features,
7x7x7 stride-2 stem and 3x3x3 stride-2 max-pool (MONAI's defaults), LeakyReLU
(0.01) everywhere, the **last transition layer removed** (the input, 80x120x40,
is small) and one linear output: the age in years. Kaiming-normal initialisation.

:func:`empty_model` builds the same network without running any initialiser (its
tensors are allocated, never written), for loading weights that overwrite them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch.overrides import TorchFunctionMode
from monai.networks.layers.factories import Conv
from monai.networks.nets import DenseNet
from monai.networks.nets.densenet import _DenseBlock
from monai.networks.layers.utils import get_norm_layer
from torch import nn

from .cpu_kernels import use_onednn_kernels

ARCHITECTURE = "densenet169-3d-no-last-transition"
#: Parameter count of this architecture (the paper reports 20.4 M).
EXPECTED_PARAMETERS = 20_386_945

DEFAULT_CONFIG = {
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 1,
    "init_features": 64,
    "growth_rate": 32,
    "block_config": [6, 12, 32, 32],
    "bn_size": 4,
    "act": ["leakyrelu", {"negative_slope": 0.01, "inplace": True}],
    "norm": "batch",
    "dropout_prob": 0.0,
}


def _remove_last_transition(net: DenseNet, config: dict) -> None:
    """Drop the transition before the last dense block and rebuild what follows for the wider input."""
    blocks = config["block_config"]
    last = len(blocks)
    features: nn.Sequential = net.features
    transition = getattr(features, f"transition{last - 1}")
    wide = transition.conv.in_channels
    modules = OrderedDict((name, m) for name, m in features.named_children() if name != f"transition{last - 1}")
    act = tuple(config["act"]) if isinstance(config["act"], list) else config["act"]
    modules[f"denseblock{last}"] = _DenseBlock(
        spatial_dims=config["spatial_dims"],
        layers=blocks[-1],
        in_channels=wide,
        bn_size=config["bn_size"],
        growth_rate=config["growth_rate"],
        dropout_prob=config["dropout_prob"],
        act=act,
        norm=config["norm"],
    )
    out_channels = wide + blocks[-1] * config["growth_rate"]
    modules[f"norm{last + 1}"] = get_norm_layer(name=config["norm"], spatial_dims=config["spatial_dims"], channels=out_channels)
    net.features = nn.Sequential(modules)
    net.class_layers.out = nn.Linear(out_channels, config["out_channels"])


def _kaiming_init(net: nn.Module, spatial_dims: int) -> None:
    """Kaiming-normal convolutions, unit/zero batch norm, zero linear bias (as MONAI's DenseNet does)."""
    conv_type = Conv[Conv.CONV, spatial_dims]
    for m in net.modules():
        if isinstance(m, conv_type):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, 0)


def build_model(config: dict | None = None, *, seed: int | None = None) -> nn.Module:
    """Create the brain-age network (input N x 1 x 80 x 120 x 40, output N x 1 years)."""
    config = {**DEFAULT_CONFIG, **(config or {})}
    if seed is not None:
        torch.manual_seed(seed)
    act = tuple(config["act"]) if isinstance(config["act"], list) else config["act"]
    net = DenseNet(
        spatial_dims=config["spatial_dims"],
        in_channels=config["in_channels"],
        out_channels=config["out_channels"],
        init_features=config["init_features"],
        growth_rate=config["growth_rate"],
        block_config=tuple(config["block_config"]),
        bn_size=config["bn_size"],
        act=act,
        norm=config["norm"],
        dropout_prob=config["dropout_prob"],
    )
    _remove_last_transition(net, config)
    last = len(config["block_config"])
    for rebuilt in (getattr(net.features, f"denseblock{last}"), getattr(net.features, f"norm{last + 1}"), net.class_layers.out):
        _kaiming_init(rebuilt, config["spatial_dims"])  # MONAI's constructor initialised every other layer alike
    return use_onednn_kernels(net)  # CPU inference passes on oneDNN (same numbers; see cpu_kernels)


#: What :func:`empty_model` skips: torch.nn.init's initialisers and the tensor writes they end in
#: (some, e.g. kaiming_normal_, are not overridable themselves). Weights and buffers are loaded over them.
_INITIALISERS = frozenset(
    [getattr(nn.init, name) for name in ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_")]
    + [getattr(torch.Tensor, name) for name in ("normal_", "uniform_", "fill_", "zero_")]
)


class _SkipInitialisers(TorchFunctionMode):
    """Turn every initialising write inside the block into a no-op (this thread only)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _INITIALISERS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def empty_model(config: dict | None = None) -> nn.Module:
    """The network of :func:`build_model` with uninitialised (allocated, untouched) weights and buffers.

    For loading a state dict with ``assign=True``: no time is spent on initialisers
    whose values would be overwritten. (The meta device would avoid the allocation too,
    but its first use imports ~800 torch modules, ~2 s in a fresh process.)
    """
    with _SkipInitialisers():
        return build_model(config)


def network_ages(model: nn.Module, x: torch.Tensor, mirror: bool = False) -> torch.Tensor:
    """Ages (N,) of a batch N x 1 x X x Y x Z in float32; ``mirror``: each the mean with the age of its right-left
    mirror image (voxel axis 0 of the canonical RAS+ input, the axis the training's mirror augmentation flips)."""
    ages = model(x).float()[:, 0]
    return (ages + model(x.flip(2)).float()[:, 0]) / 2 if mirror else ages


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
