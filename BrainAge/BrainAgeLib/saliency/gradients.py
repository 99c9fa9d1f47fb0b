"""Gradient saliency on the model input (80x120x40, 2 mm), averaged over the fold models.

Guided backpropagation (the paper), integrated gradients and SmoothGrad (Captum's
``IntegratedGradients`` and ``NoiseTunnel`` over ``Saliency``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..cpu_kernels import cpu_micro_batch
from ..cpu_runtime import flush_denormals

METHODS = ("guided-backprop", "integrated-gradients", "smoothgrad")
#: The method used when none is named (chosen by benchmarks/saliency_truth.py; see docs/saliency.md).
DEFAULT_METHOD = "integrated-gradients"
#: SmoothGrad: noisy copies of the input, and the noise SD as a share of the input's intensity range.
SMOOTHGRAD_SAMPLES, SMOOTHGRAD_NOISE = 8, 0.1


@contextlib.contextmanager
def _guided_activations(models: Sequence[nn.Module]) -> Iterator[None]:
    """Make every (Leaky)ReLU pass back only positive gradients (Springenberg et al. 2015)."""
    handles, inplace = [], []
    for model in models:
        for module in model.modules():
            if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
                inplace.append((module, module.inplace))
                module.inplace = False  # backward hooks cannot follow in-place ops
                handles.append(
                    module.register_full_backward_hook(lambda _m, grad_in, _g: (torch.clamp(grad_in[0], min=0.0),))
                )
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in inplace:
            module.inplace = flag


@contextlib.contextmanager
def _input_gradient_only(models: Sequence[nn.Module]) -> Iterator[None]:
    """Let autograd skip the weight gradients (a saliency map needs d output / d input only)."""
    flags = [(p, p.requires_grad) for model in models for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _ensemble(models: Sequence[nn.Module]):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in models]).mean(dim=0)

    return forward


def _copies_per_pass(models: Sequence[nn.Module], x: torch.Tensor) -> int:
    """Interpolation steps / noisy copies per network pass: the CPU micro-batch of prediction, 1 on a GPU."""
    return cpu_micro_batch(models[0], tuple(x.shape[2:])) if x.device.type == "cpu" else 1


def guided_backprop(models: Sequence[nn.Module], x: torch.Tensor) -> np.ndarray:
    """|d age / d input| under guided backpropagation, ensemble-mean output, shape of ``x[0, 0]``."""
    x = x.detach().clone().requires_grad_(True)
    with _guided_activations(models), torch.enable_grad():
        _ensemble(models)(x).sum().backward()
    return np.abs(x.grad[0, 0].detach().cpu().numpy()).astype(np.float32)


def integrated_gradients(models: Sequence[nn.Module], x: torch.Tensor, *, steps: int = 8,
                         baseline: np.ndarray | None = None) -> np.ndarray:
    """|Integrated gradients| (Sundararajan et al. 2017) from ``baseline`` (model-grid array; default all
    background, zeros: benchmarks/saliency_baselines.py measured blurred ones, docs/saliency.md)."""
    from captum.attr import IntegratedGradients

    start = torch.zeros_like(x) if baseline is None else torch.as_tensor(baseline, dtype=x.dtype, device=x.device).reshape(x.shape)
    explainer = IntegratedGradients(_ensemble(models))
    with torch.enable_grad():
        attributions = explainer.attribute(
            x.detach(), baselines=start, target=0, n_steps=steps,
            internal_batch_size=_copies_per_pass(models, x),
        )
    return np.abs(attributions[0, 0].detach().cpu().numpy()).astype(np.float32)


def smoothgrad(models: Sequence[nn.Module], x: torch.Tensor, *, samples: int = SMOOTHGRAD_SAMPLES,
               noise: float = SMOOTHGRAD_NOISE, seed: int = 0) -> np.ndarray:
    """|d age / d input| averaged over noisy copies of the input (Smilkov et al. 2017), fixed seed."""
    from captum.attr import NoiseTunnel, Saliency

    explainer = NoiseTunnel(Saliency(_ensemble(models)))
    sd = noise * float(x.max() - x.min())
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.enable_grad():
            attributions = explainer.attribute(x.detach(), nt_type="smoothgrad", nt_samples=samples,
                                               nt_samples_batch_size=_copies_per_pass(models, x), stdevs=sd,
                                               target=0, abs=True)
    finally:
        torch.random.set_rng_state(state)
    return np.abs(attributions[0, 0].detach().cpu().numpy()).astype(np.float32)


_METHOD_FUNCTIONS = {"guided-backprop": guided_backprop, "integrated-gradients": integrated_gradients, "smoothgrad": smoothgrad}


def compute_saliency(models: Sequence[nn.Module], x: torch.Tensor, method: str = "guided-backprop", **kwargs) -> np.ndarray:
    """Saliency on the model grid, scaled so its 99.9th percentile is 1.

    Denormals are flushed and the weights' gradients are not computed while it runs.
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; use one of {METHODS}")
    with flush_denormals(), _input_gradient_only(models):
        raw = _METHOD_FUNCTIONS[method](models, x, **kwargs)
    scale = float(np.percentile(raw, 99.9)) or float(raw.max()) or 1.0
    return np.clip(raw / scale, 0.0, None).astype(np.float32)
