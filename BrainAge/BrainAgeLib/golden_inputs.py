"""Fixed inputs made from the real sample heads, for golden-result checks of a shipped model.

Each input is a Volume built deterministically from ``sample_data/`` (fetched at set-up), so
a table of expected ages per (input, skull-strip backend) catches any change to preprocessing,
weights or libraries that moves an age. ``reoriented`` gives the same scan stored in another
voxel order (e.g. LPS, PIR, ILA): the age must not change.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from .io import Volume, load_nifti
from .sample_data import sample_path
from .slicing import synthetic_clinical_scans

#: input id -> (description, skull-strip backends it is checked with)
GOLDEN_INPUTS = {
    "colin27_brain_axial7mm": ("Colin27 brain (pre-stripped), every 7th 1 mm slice from the first", ("none",)),
    "colin27_brain_3d": ("Colin27 brain (pre-stripped), 1 mm 3D", ("none",)),
    "mni152_brain_axial6mm": ("MNI152 head x its reference mask, every 6th 1 mm slice from the third", ("none",)),
    "colin27_head_axial7mm": ("Colin27 head with skull, every 7th 1 mm slice from the first", ("deepbet", "hd-bet")),
}


def golden_input(name: str) -> Volume:
    """The volume of one golden input (see :data:`GOLDEN_INPUTS`)."""
    if name == "colin27_brain_axial7mm":
        return synthetic_clinical_scans(load_nifti(sample_path("colin27_brain")), 7.0)[0]
    if name == "colin27_brain_3d":
        return load_nifti(sample_path("colin27_brain"))
    if name == "mni152_brain_axial6mm":
        head, mask = load_nifti(sample_path("mni152_head")), load_nifti(sample_path("mni152_mask"))
        return synthetic_clinical_scans(head.with_data(head.data * (mask.data > 0.5)), 6.0)[2]
    if name == "colin27_head_axial7mm":
        return synthetic_clinical_scans(load_nifti(sample_path("colin27_head")), 7.0)[0]
    raise KeyError(f"unknown golden input {name!r}; known: {sorted(GOLDEN_INPUTS)}")


def reoriented(volume: Volume, code: str) -> Volume:
    """The same image stored in another voxel order, given by its orientation code ('LPS', 'PIR', 'ILA', ...)."""
    image = nib.Nifti1Image(np.asarray(volume.data), volume.affine)
    ornt = nib.orientations.axcodes2ornt(tuple(code))
    current = nib.orientations.io_orientation(volume.affine)
    out = image.as_reoriented(nib.orientations.ornt_transform(current, ornt))
    return Volume(np.ascontiguousarray(out.get_fdata(dtype=np.float32)), out.affine, volume.source)
