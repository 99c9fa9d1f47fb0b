"""Saliency: which voxels and regions moved the predicted age.

- :mod:`.gradients`: guided backpropagation (the paper), integrated gradients and SmoothGrad on the model input;
- :mod:`.grids`: back onto the scan's own grid (same shape and affine), smoothing and thresholds for display;
- :mod:`.regions` and :mod:`.occlusion`: tissue regions inside the brain and the years each one moves the age.
"""

from .gradients import DEFAULT_METHOD, METHODS, compute_saliency
from .grids import fraction_inside, smooth_for_display, to_reference_grid, top_percent

__all__ = ["DEFAULT_METHOD", "METHODS", "compute_saliency", "fraction_inside", "smooth_for_display", "to_reference_grid", "top_percent"]
