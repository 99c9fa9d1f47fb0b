"""oneDNN kernels for CPU inference passes: same numbers as PyTorch's own modules, and actually used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from BrainAgeLib.cpu_kernels import OneDNNConv3d, OneDNNMaxPool3d, use_onednn_kernels
from BrainAgeLib.model import build_model

COMPACT = {"init_features": 8, "growth_rate": 8, "block_config": [3, 6, 12, 8]}


def _plain_copy(fast: nn.Module, plain_type: type[nn.Module]) -> nn.Module:
    module = type(fast).__new__(plain_type)
    module.__dict__ = fast.__dict__
    return module


def _ops(model: nn.Module, x: torch.Tensor) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x)
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize("kernel,stride,padding,channels,groups", [
    (3, 1, 1, 16, 1), (1, 1, 0, 32, 1), (7, 2, 3, 1, 1), (3, 2, 0, 8, 2), ((3, 1, 3), (1, 2, 1), (1, 0, 1), 4, 1),
])
def test_convolution_matches_pytorch(kernel, stride, padding, channels, groups):
    torch.manual_seed(0)
    fast = OneDNNConv3d(channels, 8, kernel, stride=stride, padding=padding, groups=groups)
    plain = _plain_copy(fast, nn.Conv3d)
    x = torch.randn(1, channels, 10, 15, 6)
    with torch.inference_mode():
        assert torch.allclose(fast(x), plain(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", [(3, 2, 1, False), (2, None, 0, False), (3, 2, 0, True)])
def test_max_pool_is_exactly_pytorchs(kernel, stride, padding, ceil_mode):
    fast = OneDNNMaxPool3d(kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    plain = _plain_copy(fast, nn.MaxPool3d)
    x = torch.randn(2, 4, 11, 14, 7)
    with torch.inference_mode():
        assert torch.equal(fast(x), plain(x))


def test_inference_pass_runs_onednn_and_gives_the_same_ages():
    torch.manual_seed(1)
    model = build_model(COMPACT, seed=3).eval()
    assert all(type(m) is not nn.Conv3d for m in model.modules())  # build_model switched every one
    reference = build_model(COMPACT, seed=3).eval()
    for module in reference.modules():  # the same network on PyTorch's own modules
        if isinstance(module, OneDNNConv3d):
            module.__class__ = nn.Conv3d
        elif isinstance(module, OneDNNMaxPool3d):
            module.__class__ = nn.MaxPool3d
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 80, 120, 40)
    with torch.inference_mode():
        ops = _ops(model, x)
        assert "aten::slow_conv3d_forward" not in ops and "aten::max_pool3d_with_indices" not in ops
        assert "aten::mkldnn_convolution" in ops and "aten::mkldnn_max_pool3d" in ops
        assert "aten::slow_conv3d_forward" in _ops(reference, x)  # what the switch avoids at batch 1
        ages, expected = model(x), reference(x)
    assert torch.allclose(ages, expected, atol=1e-4)


def test_gradients_autocast_and_training_keep_pytorchs_path():
    model = build_model(COMPACT, seed=0).eval()
    x = torch.randn(1, 1, 80, 120, 40, requires_grad=True)
    ops = _ops(model, x)  # saliency: gradients with respect to the input
    assert "aten::slow_conv3d_forward" in ops and "aten::max_pool3d_with_indices" in ops
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ops = _ops(model, x.detach())
    assert "aten::mkldnn_max_pool3d" not in ops  # autocast casts PyTorch's own ops; ours would stay float32
    with torch.no_grad():  # validation during training: trainable weights, but no gradient taken
        assert "aten::mkldnn_max_pool3d" in _ops(model, x.detach())


def test_switch_keeps_state_dict_and_types():
    plain = nn.Sequential(nn.Conv3d(1, 2, 3), nn.MaxPool3d(2), nn.Conv2d(2, 2, 1))
    keys = list(plain.state_dict())
    fast = use_onednn_kernels(plain)
    assert list(fast.state_dict()) == keys
    assert isinstance(fast[0], nn.Conv3d) and type(fast[0]) is OneDNNConv3d
    assert type(fast[1]) is OneDNNMaxPool3d and type(fast[2]) is nn.Conv2d


def test_micro_batches_follow_the_stem_size_and_keep_ages_and_order(two_fold_package):
    from BrainAgeLib.cpu_kernels import cpu_micro_batch
    from BrainAgeLib.predict import Predictor

    assert cpu_micro_batch(build_model(), (80, 120, 40)) == 2  # the paper's network: 12 MiB stem output per scan
    assert cpu_micro_batch(build_model(COMPACT), (80, 120, 40)) >= 8  # the shipped compact network
    predictor = Predictor(two_fold_package, device="cpu", skull_strip="none")
    assert predictor.micro_batch == 2
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(80, 120, 40)).astype(np.float32) for _ in range(3)]
    split = predictor.forward(arrays)  # passes of 2 + 1 scans
    predictor.micro_batch = 3
    whole = predictor.forward(arrays)
    alone = np.concatenate([predictor.forward([a]) for a in arrays])
    assert split.shape == (3, 2)
    np.testing.assert_allclose(split, whole, atol=1e-3)
    np.testing.assert_allclose(split, alone, atol=1e-3)
    assert np.ptp(split[:, 0]) > 1e-3  # different scans, different ages: the order is tested


def test_other_cpus_keep_pytorchs_path(monkeypatch):
    import BrainAgeLib.cpu_kernels as kernels

    model = build_model(COMPACT, seed=0).eval()
    x = torch.randn(1, 1, 80, 120, 40)
    with torch.inference_mode():
        expected = model(x)
        monkeypatch.setattr(kernels, "X86_64", False)  # e.g. Apple silicon: not measured there
        ops = _ops(model, x)
        assert "aten::mkldnn_max_pool3d" not in ops and "aten::max_pool3d_with_indices" in ops
        assert torch.allclose(model(x), expected, atol=1e-4)
