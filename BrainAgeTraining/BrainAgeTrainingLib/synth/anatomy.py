"""Real heads prepared once for synthetic ageing: tissue maps, ventricles, distance fields.

A :class:`HeadTemplate` holds one real head (with skull) on a 1 mm RAS grid and
everything the ageing model needs, computed once and cached as ``.npz``:

* soft tissue maps (CSF, grey matter, white matter) from a 3-class Gaussian
  mixture fitted to the head's own intensities inside its brain mask. Where the
  head lies in MNI space (Colin27, the FSL MNI152 head) the MNI152 2009 grey/white
  maps shipped inside nilearn are used as spatial priors (a one-step "unified
  segmentation" posterior, Ashburner & Friston 2005, NeuroImage 26:839), so the
  boundaries follow the real head's intensities, not the template's;
* the lateral + third ventricles: connected components of CSF lying deeper than
  15 mm below the brain-mask surface and within 35 mm of the mid-sagittal plane,
  each larger than 0.5 mL and a fifth of the largest, grown geodesically 6 mm into CSF deeper
  than 6 mm (reaching the temporal horns and the third ventricle); posterior midline cisterns
  and the posterior fossa are excluded by MNI position;
* signed distance fields (mm) to the pial surface, the grey/white boundary and the
  ventricle surface, plus the ventricle's outward normal field;
* a medial temporal lobe (hippocampus/amygdala) weight map and a wider
  temporo-parietal one, placed by MNI coordinates mapped onto the head by matching
  brain-mask moments.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from BrainAgeLib.io import Volume, load_nifti, to_canonical
from BrainAgeLib.sample_data import sample_data_dir
from BrainAgeLib.user_cache import cache_dir as user_cache_dir

#: Working grid spacing (mm) for all templates.
WORK_SPACING = 1.0
#: Bump when the preparation changes so stale caches are rebuilt.
CACHE_VERSION = "8"
#: Tissue channels in :attr:`HeadTemplate.prob` order.
CSF, GM, WM = 0, 1, 2


@dataclass(frozen=True)
class HeadSource:
    """A real head with skull, its brain mask, and what is known about it."""

    name: str
    head_file: str
    mask_file: str
    in_mni_space: bool
    reference_age: float  # age (years) the head's anatomy is taken to represent
    note: str


#: Heads shipped by ``scripts/fetch_sample_data.sh``. The ROBEX atlas head has no brain
#: mask in its package, so it is not used (see docs/synthetic_cohorts.md).
HEAD_SOURCES: dict[str, HeadSource] = {
    "colin27": HeadSource(
        "colin27", "colin27_head.nii.gz", "colin27_brain.nii.gz", True, 33.0,
        "Colin Holmes, 27 averaged scans, a man in his thirties (Holmes et al. 1998, JCAT 22:324)",
    ),
    "mni152": HeadSource(
        "mni152", "mni152_head.nii.gz", "mni152_mask.nii.gz", True, 25.0,
        "FSL MNI152 non-linear 6th generation: 152 young adults, mean age about 25 (Grabner et al. 2006)",
    ),
}


@dataclass(frozen=True)
class HeadTemplate:
    """One prepared head on a 1 mm RAS grid (arrays indexed [x, y, z])."""

    name: str
    reference_age: float
    affine: np.ndarray  # voxel -> world (mm)
    head: np.ndarray  # float32 intensities, white matter mean = 1
    mask: np.ndarray  # float32 brain mask (0/1)
    prob: np.ndarray  # float32 (3, X, Y, Z): CSF, GM, WM soft maps inside the mask
    vent: np.ndarray  # float32 lateral + third ventricle mask (0/1)
    means: np.ndarray  # float32 (3,): class mean intensities (CSF, GM, WM)
    pial: np.ndarray  # float32 signed distance (mm): + inside GM to nearest CSF/outside, - in sulcal CSF to GM
    gmwm: np.ndarray  # float32 signed distance (mm): + inside WM to nearest non-WM, - in GM to WM
    vent_dist: np.ndarray  # float32 signed distance (mm) to the ventricle surface, - inside
    vent_normal: np.ndarray  # float32 (3, X, Y, Z) unit outward normal of the ventricles (voxel axes)
    mtl: np.ndarray  # float32 medial temporal weight (0..1)
    temporal: np.ndarray  # float32 temporo-parietal weight (0..1), wider, for AD-like atrophy

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.head.shape)  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray:
        """Hard labels: 0 outside, 1 CSF, 2 GM, 3 WM, 4 ventricle."""
        lab = np.where(self.mask > 0.5, np.argmax(self.prob, axis=0) + 1, 0).astype(np.uint8)
        lab[self.vent > 0.5] = 4
        return lab

    @cached_property
    def geometry(self) -> np.ndarray:
        """(4, X, Y, Z): ventricle wall distance and outward normal, stacked once for sampling."""
        return np.ascontiguousarray(np.concatenate([self.vent_dist[None], self.vent_normal]), dtype=np.float32)

    @cached_property
    def brain_centre(self) -> np.ndarray:
        """World (mm) centroid of the brain mask."""
        idx = np.argwhere(self.mask > 0.5).mean(axis=0)
        return (self.affine @ np.r_[idx, 1.0])[:3]


def cache_dir() -> Path:
    """Where prepared templates are cached: <user cache>/synth."""
    return user_cache_dir() / "synth"


def _resample_to_grid(volume: Volume, affine: np.ndarray, shape: tuple[int, int, int], order: int = 1) -> np.ndarray:
    """Sample ``volume`` on the grid (affine, shape) by world coordinates."""
    vox_to_src = np.linalg.inv(volume.affine) @ affine
    return ndimage.affine_transform(
        volume.data.astype(np.float32), vox_to_src[:3, :3], offset=vox_to_src[:3, 3],
        output_shape=shape, order=order, mode="constant", cval=0.0,
    )


def _nilearn_priors(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """MNI152 2009 grey- and white-matter probability maps (shipped with nilearn) on a grid."""
    from nilearn import datasets  # package data: loads without downloading

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm_img = datasets.load_mni152_wm_template(resolution=1)
    out = []
    for img in (gm_img, wm_img):
        vol = Volume(np.asarray(img.get_fdata(), dtype=np.float32), np.asarray(img.affine, dtype=float))
        data = _resample_to_grid(vol, affine, shape, order=1)
        out.append(np.clip(data / max(float(data.max()), 1e-6), 0.0, 1.0))
    return out[0], out[1]


def fit_tissue_classes(
    intensity: np.ndarray, mask: np.ndarray, priors: np.ndarray | None = None, iterations: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """Three-class (CSF < GM < WM) Gaussian mixture on intensities inside ``mask`` (EM).

    ``priors`` (3, ...) are spatial prior probabilities multiplied into the
    likelihood (floored at 0.05 so the head's own intensities decide where the
    template and the head disagree). Returns soft maps (3, ...) and class means.
    """
    inside = mask > 0.5
    x = intensity[inside].astype(np.float64)
    mu = np.percentile(x, [10, 45, 85])
    sd = np.full(3, x.std() / 4)
    weight = np.full(3, 1 / 3)
    pri = None
    if priors is not None:
        pri = np.stack([np.clip(p[inside], 0.05, 1.0) for p in priors]).astype(np.float64)
        pri /= pri.sum(axis=0, keepdims=True)
    for _ in range(iterations):
        lik = np.exp(-0.5 * ((x[None] - mu[:, None]) / sd[:, None]) ** 2) / sd[:, None]
        post = lik * (pri if pri is not None else weight[:, None]) + 1e-30
        post /= post.sum(axis=0, keepdims=True)
        n = post.sum(axis=1)
        mu = (post * x[None]).sum(axis=1) / n
        sd = np.sqrt((post * (x[None] - mu[:, None]) ** 2).sum(axis=1) / n) + 1e-6
        weight = n / n.sum()
    order = np.argsort(mu)
    prob = np.zeros((3,) + intensity.shape, dtype=np.float32)
    for c, k in enumerate(order):
        prob[c][inside] = post[k]
    return prob, mu[order].astype(np.float32)


def find_ventricles(
    labels: np.ndarray, mask: np.ndarray, spacing: float = WORK_SPACING, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Lateral + third ventricles from hard labels (1 CSF, 2 GM, 3 WM): deep central CSF components.

    Deep = more than 15 mm below the brain-mask surface; central = component centroid
    within 35 mm of the mask's mid-sagittal plane; components under 0.5 mL or under a
    fifth of the largest (deep cisterns) are dropped.
    The seeds are then grown 6 mm through CSF that is at least 6 mm deep.
    """
    depth = ndimage.distance_transform_edt(mask > 0.5) * spacing
    csf = labels == 1
    if exclude is not None:
        csf &= ~exclude
    seeds = csf & (depth > 15.0)
    comp, n = ndimage.label(seeds, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros_like(mask, dtype=np.float32)
    centre_x = np.argwhere(mask > 0.5)[:, 0].mean()
    sizes = ndimage.sum(seeds, comp, index=np.arange(1, n + 1)) * spacing**3
    cents = ndimage.center_of_mass(seeds, comp, index=np.arange(1, n + 1))
    central = [i for i in range(n) if sizes[i] > 500.0 and abs(cents[i][0] - centre_x) * spacing < 35.0]
    biggest = max((sizes[i] for i in central), default=0.0)
    keep = [i + 1 for i in central if sizes[i] >= 0.2 * biggest]  # drops deep cisterns (small seeds)
    vent = np.isin(comp, keep)
    allowed = csf & (depth > 6.0)
    for _ in range(int(round(6.0 / spacing))):
        vent = ndimage.binary_dilation(vent, structure=ndimage.generate_binary_structure(3, 1)) & allowed
    return vent.astype(np.float32)


def _moments_map(mask: np.ndarray, affine: np.ndarray):
    """World (template head) coordinates from MNI coordinates, matching brain-mask extents."""
    pts = np.argwhere(mask > 0.5)
    world = np.c_[pts, np.ones(len(pts))] @ affine.T
    lo, hi = np.percentile(world[:, :3], [1, 99], axis=0)
    mni_lo = np.array([-68.0, -102.0, -44.0])  # MNI152 brain extent (1st/99th percentile), mm
    mni_hi = np.array([68.0, 68.0, 76.0])
    scale = (hi - lo) / (mni_hi - mni_lo)
    return lambda mni: lo + (np.asarray(mni, dtype=float) - mni_lo) * scale, scale


def _blob_weight(shape, affine, centres, sigmas) -> np.ndarray:
    """Sum of anisotropic Gaussian blobs (world centres, sigmas in mm), clipped to 1."""
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = (affine[:3, :3] @ idx) + affine[:3, 3:4]
    w = np.zeros(idx.shape[1], dtype=np.float32)
    for c, s in zip(centres, sigmas):
        w += np.exp(-0.5 * (((world - np.asarray(c)[:, None]) / np.asarray(s)[:, None]) ** 2).sum(axis=0))
    return np.clip(w, 0, 1).reshape(shape).astype(np.float32)


def prepare_template(source: HeadSource, data_dir: Path | None = None) -> HeadTemplate:
    """Build a :class:`HeadTemplate` from a real head and its brain mask (a few seconds)."""
    data_dir = data_dir or sample_data_dir()
    head_path, mask_path = data_dir / source.head_file, data_dir / source.mask_file
    if not head_path.is_file() or not mask_path.is_file():
        raise FileNotFoundError(
            f"{head_path} / {mask_path} not found: run scripts/fetch_sample_data.sh (or set BRAINAGE_SAMPLE_DATA)."
        )
    head = to_canonical(load_nifti(head_path))
    mask = to_canonical(load_nifti(mask_path))
    # 1 mm RAS working grid cropped to the head (+4 mm)
    src = head.data > np.percentile(head.data[head.data > 0], 5) * 0.5
    src = ndimage.binary_opening(src, iterations=2)
    lo = np.maximum(np.argwhere(src).min(axis=0) - 4, 0)
    hi = np.minimum(np.argwhere(src).max(axis=0) + 5, head.shape)
    start = head.affine @ np.r_[lo, 1.0]
    extent = (hi - lo) * np.asarray(head.spacing)
    shape = tuple(int(np.ceil(e / WORK_SPACING)) for e in extent)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([WORK_SPACING] * 3) @ np.diag(np.sign(np.diag(head.affine[:3, :3])))
    affine[:3, 3] = start[:3]
    img = _resample_to_grid(head, affine, shape, order=1)
    border = np.concatenate([img[:3].ravel(), img[-3:].ravel(), img[:, :3].ravel(), img[:, -3:].ravel()])
    img = np.clip(img - np.median(border), 0, None)
    # air = 0 (so the template's box edge never shows): keep the head's largest component, filled, +3 mm
    solid = ndimage.binary_opening(img > 0.08 * np.percentile(img[img > 0], 99), iterations=1)
    comp, n = ndimage.label(solid)
    if n:
        solid = comp == (np.argmax(np.bincount(comp.ravel())[1:]) + 1)
    solid = ndimage.binary_dilation(ndimage.binary_fill_holes(solid), iterations=3)
    img = (img * ndimage.gaussian_filter(solid.astype(np.float32), 1.0)).astype(np.float32)
    msk = (_resample_to_grid(mask.with_data((mask.data > 0).astype(np.float32)), affine, shape, order=1) > 0.5)
    msk = ndimage.binary_fill_holes(msk)
    priors = None
    if source.in_mni_space:
        gm, wm = _nilearn_priors(affine, shape)
        priors = np.stack([np.clip(1 - gm - wm, 0, 1), gm, wm])
    prob, means = fit_tissue_classes(img, msk, priors)
    scale = float(means[WM])
    img = (img / scale).astype(np.float32)
    means = (means / scale).astype(np.float32)
    labels = np.where(msk, np.argmax(prob, axis=0) + 1, 0).astype(np.uint8)
    # posterior midline cisterns (quadrigeminal, superior cerebellar) and the posterior fossa are not
    # lateral/third ventricle: excluded by MNI position (mapped by brain-mask extents)
    to_world, scale = _moments_map(msk, affine)
    origin = to_world(np.zeros(3))
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    mni = (((affine[:3, :3] @ idx) + affine[:3, 3:4]) - origin[:, None]) / scale[:, None]
    excl = ((np.abs(mni[0]) < 10) & (mni[1] < -32) & (mni[2] < 12)) | ((mni[1] < -40) & (mni[2] < -20))
    vent = find_ventricles(labels, msk.astype(np.float32), exclude=excl.reshape(shape))
    del idx, mni
    is_v = vent > 0.5
    gm_hard, wm_hard = labels == 2, labels == 3
    sulcal = (labels == 1) & ~is_v
    pial = np.zeros(shape, dtype=np.float32)
    pial[gm_hard] = ndimage.distance_transform_edt(gm_hard | wm_hard)[gm_hard]  # to CSF or outside
    pial[sulcal] = -ndimage.distance_transform_edt(~gm_hard)[sulcal]
    gmwm = np.zeros(shape, dtype=np.float32)
    gmwm[wm_hard] = ndimage.distance_transform_edt(wm_hard)[wm_hard]
    gmwm[gm_hard] = -ndimage.distance_transform_edt(~wm_hard)[gm_hard]
    # signed distance with the wall half-way between voxel centres (so {d < 0} is the ventricle)
    vdist = np.where(is_v, 0.5 - ndimage.distance_transform_edt(is_v), ndimage.distance_transform_edt(~is_v) - 0.5)
    vdist = vdist.astype(np.float32)
    vdist_s = ndimage.gaussian_filter(np.clip(vdist, -20, 60), 1.5)
    grad = np.stack(np.gradient(vdist_s)).astype(np.float32)
    grad /= np.maximum(np.linalg.norm(grad, axis=0, keepdims=True), 0.2)
    mtl = _blob_weight(shape, affine, [to_world([s * 26, -20, -16]) for s in (-1, 1)], [(6, 12, 7)] * 2)
    temporal = _blob_weight(
        shape, affine,
        [to_world([s * 26, -20, -16]) for s in (-1, 1)] + [to_world([s * 48, -30, -8]) for s in (-1, 1)],
        [(9, 18, 10)] * 2 + [(10, 28, 14)] * 2,
    )
    return HeadTemplate(
        name=source.name, reference_age=source.reference_age, affine=affine, head=img,
        mask=msk.astype(np.float32), prob=prob * msk, vent=vent, means=means, pial=pial * WORK_SPACING,
        gmwm=gmwm * WORK_SPACING, vent_dist=vdist * WORK_SPACING, vent_normal=grad, mtl=mtl, temporal=temporal,
    )


def _cache_key(source: HeadSource, data_dir: Path) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    for name in (source.head_file, source.mask_file):
        h.update((data_dir / name).read_bytes())
    return h.hexdigest()[:16]


_FIELDS = ("affine", "head", "mask", "prob", "vent", "means", "pial", "gmwm", "vent_dist", "vent_normal", "mtl",
           "temporal")


def load_template(name: str, data_dir: Path | None = None) -> HeadTemplate:
    """Prepared template ``name`` (see :data:`HEAD_SOURCES`), from the cache or built and cached."""
    if name not in HEAD_SOURCES:
        raise KeyError(f"unknown head {name!r}; choose from {sorted(HEAD_SOURCES)}")
    source = HEAD_SOURCES[name]
    data_dir = Path(data_dir) if data_dir else sample_data_dir()
    path = cache_dir() / f"{name}-{_cache_key(source, data_dir)}.npz"
    if path.is_file():
        with np.load(path) as z:
            arrays = {k: z[k] for k in _FIELDS}
            return HeadTemplate(name=name, reference_age=source.reference_age, **arrays)
    tpl = prepare_template(source, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **{k: getattr(tpl, k) for k in _FIELDS})
    os.replace(tmp, path)
    return tpl


def template_as_nifti(tpl: HeadTemplate, data: np.ndarray) -> nib.Nifti1Image:
    """A template-grid array as a NIfTI image (for inspection)."""
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), tpl.affine)
