"""Fixed BatchNorm statistics for the last epochs of training (``freeze_batchnorm_from_epoch``).

A network trained with batches of 8 normalises every training step with that batch's statistics
but predicts with running averages of them. On the IXI runs the two disagree: the validation MAE
of the same run jumps by up to 30 y from one epoch to the next, mostly as a shift of every age
(a DenseNet's last checkpoint: mean error -9.3 y with its running statistics, -3.7 y with statistics
recomputed on its augmented training scans; benchmarks/batchnorm_statistics.py). From the chosen epoch
on, train_loop recomputes the statistics once over that epoch's augmented training scans
(``torch.optim.swa_utils.update_bn``) and keeps them with :func:`freeze_statistics`: the remaining
training steps normalise exactly as prediction will, and only the weights (BatchNorm's scale and
shift among them) learn.
"""

from __future__ import annotations

from torch import nn


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_statistics(model: nn.Module) -> int:
    """Put every BatchNorm layer in evaluation mode (running statistics used, never updated); returns how many.

    Call it after ``model.train()``, which would put them back in training mode."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.eval()
    return len(layers)
