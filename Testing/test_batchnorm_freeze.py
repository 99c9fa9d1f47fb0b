"""Fixed BatchNorm statistics (train_loop, BrainAgeTrainingLib.batchnorm): statistics recomputed by update_bn are
the plain average over the batches, and a frozen network normalises with them in training mode while gradients
still reach BatchNorm's scale and shift."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from BrainAgeTrainingLib.batchnorm import batchnorm_layers, freeze_statistics


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 3, 3), nn.BatchNorm3d(3), nn.LeakyReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, 1))


def test_recomputed_statistics_average_every_batch():
    net = _net()
    batches = [(torch.randn(2, 1, 6, 6, 6) * (i + 1) + i, torch.zeros(2), torch.arange(2)) for i in range(3)]
    update_bn(batches, net, torch.device("cpu"))  # as train_loop calls it: batches of (x, age, index)
    with torch.no_grad():
        features = [net[0](x) for x, *_ in batches]
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3, 4)) for f in features]).mean(0)
    layer = batchnorm_layers(net)[0]
    assert torch.allclose(layer.running_mean, expected_mean, atol=1e-5)
    assert layer.momentum == 0.1 and net.training  # restored


def test_frozen_statistics_are_used_and_kept_in_training_mode():
    net = _net()
    net.train()
    assert freeze_statistics(net) == 1
    layer = batchnorm_layers(net)[0]
    layer.running_mean.fill_(0.5)
    layer.running_var.fill_(2.0)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(4, 1, 6, 6, 6)
    out = net(x)
    out.sum().backward()
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    with torch.no_grad():
        expected = net.eval()(x)
    assert torch.allclose(out, expected, atol=1e-6)  # training mode now normalises as prediction does
