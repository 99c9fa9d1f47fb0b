"""oneDNN kernels for every 3D convolution and max-pool of a CPU inference pass.

PyTorch sends a float32 3D convolution to oneDNN only when a heuristic written for 2D
networks says so. For one scan (batch 1) it does not for the 3x3x3 convolutions on small
feature maps nor, with one thread, for 1x1x1 ones: in the paper's DenseNet-169 88 of 167
convolutions per pass fall back to ``slow_conv3d`` (vol2col + GEMM), and the stem's
max-pool runs a reference loop that also writes indices. Calling oneDNN for them gives the
same numbers (outputs equal to float32 rounding) in about two thirds of the time
(``benchmarks/inference.py``).

The fast path is taken only where it is the same computation: an x86-64 CPU (where it was
measured), float32, no autocast, no gradient needed, zero padding given as numbers, contiguous
input for the pool; anything else (training steps, saliency, CUDA, bf16, ARM CPUs) runs
PyTorch's own modules unchanged.
"""

from __future__ import annotations

import platform

import torch
from torch import nn

#: oneDNN's 3D kernels were measured against PyTorch's choice on x86-64 only.
X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def _fast_path(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    return (
        X86_64
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not x.is_mkldnn
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *params)))
    )


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs oneDNN on CPU inference passes (same parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode == "zeros" and not isinstance(self.padding, str) and _fast_path(x, self.weight, self.bias):
            return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        return super().forward(x)


class OneDNNMaxPool3d(nn.MaxPool3d):
    """``nn.MaxPool3d`` that runs oneDNN on CPU inference passes (exactly the same maxima)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.return_indices and x.dim() == 5 and x.is_contiguous() and _fast_path(x):
            stride = self.stride if self.stride is not None else self.kernel_size
            pooled = torch.mkldnn_max_pool3d(x.to_mkldnn(), _triple(self.kernel_size), _triple(stride),
                                             _triple(self.padding), _triple(self.dilation), self.ceil_mode)
            return pooled.to_dense()
        return super().forward(x)


def _triple(value) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [int(value)] * 3


_FAST = {nn.Conv3d: OneDNNConv3d, nn.MaxPool3d: OneDNNMaxPool3d}


def use_onednn_kernels(model: nn.Module) -> nn.Module:
    """Switch ``model``'s plain Conv3d and MaxPool3d modules to the oneDNN ones, in place; returns ``model``."""
    for module in model.modules():
        fast = _FAST.get(type(module))
        if fast is not None:
            module.__class__ = fast
    return model


#: The most float32 bytes the stem's output may take in one CPU pass. Past it the feature maps
#: leave the cache and a pass costs more per scan: paper's DenseNet-169 (12 MiB per scan) on 2
#: AMD EPYC cores, fp32, 0.121 / 0.108 / 0.131 / 0.145 s per scan at 1 / 2 / 4 / 8 scans per pass;
#: the compact network (1.5 MiB per scan) is fastest at 8 (0.017 / 0.013 / 0.012 / 0.010 s).
CPU_STEM_BYTES = 32 * 2**20


def cpu_micro_batch(model: nn.Module, roi_size: tuple[int, int, int]) -> int:
    """Scans per CPU pass of ``model``: as many as keep its stride-2 stem's float32 output under ``CPU_STEM_BYTES``."""
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    stem_voxels = 1
    for size in roi_size:
        stem_voxels *= max(1, size // 2)
    return max(1, CPU_STEM_BYTES // (stem.out_channels * stem_voxels * 4))
