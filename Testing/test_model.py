"""The network matches the paper's configuration."""

import numpy as np
import torch
from torch import nn

from BrainAgeLib.model import EXPECTED_PARAMETERS, build_model, count_parameters


def test_parameter_count_and_output_shape():
    model = build_model(seed=0).eval()
    assert count_parameters(model) == EXPECTED_PARAMETERS == 20_386_945
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 80, 120, 40))
    assert out.shape == (2, 1)


def test_last_transition_removed_and_leaky_relu_everywhere():
    model = build_model(seed=0)
    names = [n for n, _ in model.features.named_children()]
    assert names == ["conv0", "norm0", "relu0", "pool0", "denseblock1", "transition1", "denseblock2", "transition2", "denseblock3", "denseblock4", "norm5"]
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    assert acts and all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.01 for m in acts)
    assert model.features.conv0.kernel_size == (7, 7, 7) and model.features.conv0.stride == (2, 2, 2)
    assert model.features.pool0.kernel_size == 3 and model.features.pool0.stride == 2
    assert model.features.denseblock4.denselayer1.layers.norm1.num_features == 1280  # un-halved
    assert model.class_layers.out.in_features == 2304 and model.class_layers.out.out_features == 1


def test_kaiming_normal_init_and_seeded_determinism():
    model = build_model(seed=0)
    for conv in (model.features.denseblock2.denselayer3.layers.conv2, model.features.denseblock4.denselayer30.layers.conv2):
        fan_in = conv.in_channels * 27  # Kaiming normal, also in the rebuilt last block
        assert abs(conv.weight.std().item() - np.sqrt(2 / fan_in)) / np.sqrt(2 / fan_in) < 0.05
    assert model.features.norm5.weight.eq(1).all() and model.class_layers.out.bias.eq(0).all()
    again = build_model(seed=0)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_empty_model_has_the_architecture_and_draws_no_random_numbers():
    from BrainAgeLib.model import empty_model

    rng = torch.get_rng_state()
    empty = empty_model()
    assert torch.equal(torch.get_rng_state(), rng)  # no initialiser ran (a normal build draws ~20 M numbers)
    reference = build_model(seed=0)
    assert count_parameters(empty) == EXPECTED_PARAMETERS
    assert [(n, t.shape) for n, t in empty.state_dict().items()] == [(n, t.shape) for n, t in reference.state_dict().items()]
    empty.load_state_dict(reference.state_dict(), assign=True)
    x = torch.randn(1, 1, 80, 120, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(empty.eval()(x), reference.eval()(x))
