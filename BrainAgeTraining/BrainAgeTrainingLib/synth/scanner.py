"""Scanner and protocol: pose, head size, contrast, bias field, noise, acquisition grids.

Two acquisition styles:

* ``research3d`` - 3D T1, isotropic 0.9-1.2 mm, 176 x 216 x 196 mm field of view;
* ``clinical2d`` - 2D axial T1: acquired in-plane at about 0.9 mm (matrix 256 on a
  220-240 mm field of view), reconstructed to a 0.4-1.0 mm pixel (as scanners
  interpolate), 5-7 mm slices with an optional 0.5-2 mm gap, each slice the mean of
  five samples across its thickness (a box slice profile).

The head is posed in the scanner (rotation, shift), scaled (sex and individual head
size) and gently, non-linearly deformed (individual shape); the whole chain from an
output voxel back to the aged template is computed on a coarse in-plane grid and
interpolated (all parts are smooth), then the anatomy is sampled once with
``torch.nn.functional.grid_sample``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .ageing import AgedAnatomy, ventricle_displacement
from .anatomy import HeadTemplate

STYLES = ("research3d", "clinical2d")


@dataclass(frozen=True)
class Site:
    """A scanner site: typical contrast, bias and noise (subjects jitter around it)."""

    name: str
    gm: float  # grey matter level (white matter = 1)
    csf: float
    bias: float  # log-amplitude of the bias field
    noise: float  # noise SD / white matter level
    gain: float  # intensity scale of the stored integers


SITES = (
    Site("site-01", 0.66, 0.22, 0.10, 0.015, 900.0),
    Site("site-02", 0.72, 0.30, 0.20, 0.025, 450.0),
    Site("site-03", 0.60, 0.18, 0.15, 0.020, 1800.0),
    Site("site-04", 0.76, 0.35, 0.25, 0.035, 300.0),
)


@dataclass(frozen=True)
class Pose:
    """Head placement: rotation (degrees about R, A, S), shift (mm), scale (R, A, S)."""

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    warp_mm: float = 0.0  # SD of the individual smooth deformation
    warp_seed: int = 0


@dataclass(frozen=True)
class Acquisition:
    """Protocol and scanner for one scan."""

    style: str = "research3d"
    spacing_mm: float = 1.0  # reconstructed in-plane (clinical) or isotropic (research) spacing
    slice_thickness_mm: float = 1.0
    slice_gap_mm: float = 0.0
    flip_lr: bool = False  # store the x axis as L (LAS) instead of R (RAS)
    gm: float = 0.68
    csf: float = 0.25
    bias: float = 0.15
    noise: float = 0.02
    gain: float = 1000.0
    seed: int = 0
    extras: dict = field(default_factory=dict)

    @property
    def slice_spacing_mm(self) -> float:
        return self.slice_thickness_mm + self.slice_gap_mm


def draw_pose(rng: np.random.Generator, sex: str, *, warp_mm: float = 1.5) -> Pose:
    """Random pose: rotations ~ N(0, 4 deg) (pitch 6 deg), shifts ~ N(0, 5 mm), head size by sex."""
    size = (1.03 if sex == "M" else 0.97) * float(np.clip(rng.normal(1.0, 0.03), 0.9, 1.1))
    aniso = np.clip(rng.normal(1.0, 0.02, 3), 0.95, 1.05)
    rot = np.clip(rng.normal(0.0, [6.0, 4.0, 4.0]), -15, 15)
    return Pose(
        rotation_deg=tuple(float(r) for r in rot),
        shift_mm=tuple(float(s) for s in np.clip(rng.normal(0.0, 5.0, 3), -15, 15)),
        scale=tuple(float(size * a) for a in aniso),
        warp_mm=warp_mm,
        warp_seed=int(rng.integers(2**31)),
    )


def draw_acquisition(
    rng: np.random.Generator, style: str, site: Site, *, thickness: tuple[float, float] = (5.0, 7.0),
    gap_probability: float = 0.5,
) -> Acquisition:
    """Random protocol of ``style`` at ``site`` (contrast, bias and noise jittered)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {STYLES}")
    common = dict(
        flip_lr=bool(rng.random() < 0.5),
        gm=float(np.clip(site.gm + rng.normal(0, 0.02), 0.5, 0.85)),
        csf=float(np.clip(site.csf + rng.normal(0, 0.03), 0.08, 0.45)),
        bias=float(max(site.bias + rng.normal(0, 0.03), 0.0)),
        noise=float(max(site.noise * rng.uniform(0.7, 1.3), 0.003)),
        gain=float(site.gain),
        seed=int(rng.integers(2**31)),
    )
    if style == "research3d":
        s = float(rng.choice([0.9, 1.0, 1.0, 1.0, 1.1, 1.2]))
        return Acquisition(style=style, spacing_mm=s, slice_thickness_mm=s, **common)
    t = float(np.round(rng.uniform(*thickness) * 2) / 2)
    gap = float(np.round(rng.uniform(0.5, 2.0) * 2) / 2) if rng.random() < gap_probability else 0.0
    pixel = float(np.round(rng.uniform(0.4, 1.0), 3))
    return Acquisition(style=style, spacing_mm=pixel, slice_thickness_mm=t, slice_gap_mm=gap, **common)


def _rotation(deg: tuple[float, float, float]) -> np.ndarray:
    a, b, c = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Grid:
    """An output grid: stored shape and affine, and where its samples lie (world, mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    acq_shape: tuple[int, int]  # in-plane acquisition matrix
    acq_affine: np.ndarray  # voxel -> world for the acquisition grid (z index = slice)
    sub_offsets: np.ndarray  # through-slice sample offsets (mm) averaged into one slice


def make_grid(acq: Acquisition, centre: np.ndarray) -> Grid:
    """Field of view centred on ``centre`` (world mm) for the acquisition style."""
    sx = -1.0 if acq.flip_lr else 1.0
    if acq.style == "research3d":
        fov = np.array([176.0, 216.0, 196.0])
        s = acq.spacing_mm
        shape = tuple(int(np.ceil(f / s)) for f in fov)
        affine = np.diag([sx * s, s, s, 1.0])
        affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
        return Grid(shape, affine, shape[:2], affine, np.zeros(1))
    fov_xy = 230.0
    acq_pixel = fov_xy / 256.0
    n_acq = 256
    n_slices = int(np.ceil(150.0 / acq.slice_spacing_mm))
    dz = acq.slice_spacing_mm
    acq_aff = np.diag([sx * acq_pixel, acq_pixel, dz, 1.0])
    acq_aff[:3, 3] = centre - acq_aff[:3, :3] @ ((np.array([n_acq, n_acq, n_slices]) - 1) / 2)
    n_rec = int(round(fov_xy / acq.spacing_mm))
    rec = fov_xy / n_rec
    affine = np.diag([sx * rec, rec, dz, 1.0])
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array([n_rec, n_rec, n_slices]) - 1) / 2)
    offsets = np.linspace(-0.4, 0.4, 5) * acq.slice_thickness_mm
    return Grid((n_rec, n_rec, n_slices), affine, (n_acq, n_acq), acq_aff, offsets)


def _smooth_field(seed: int, channels: int, coarse: int, size: tuple[int, ...]) -> torch.Tensor:
    """Smooth random field (channels, *size) ~ N(0, 1) at ``coarse`` control points, trilinear."""
    g = torch.Generator().manual_seed(seed)
    ctrl = torch.randn((1, channels) + (coarse,) * len(size), generator=g)
    mode = "trilinear" if len(size) == 3 else "bilinear"
    return F.interpolate(ctrl, size=size, mode=mode, align_corners=True)[0]


def _sample(volume: torch.Tensor, vox: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Samples of ``volume`` (C, X, Y, Z) at voxel coordinates ``vox`` (..., 3) -> (C, ...).

    For a 3D block of points (S, A, B, 3) the volume is first laid out as (C, Z, X, Y)
    so that memory order follows the points' order (slices of in-plane rows): several
    times faster than strided access.
    """
    shp = tuple(vox.shape[:-1])
    if len(shp) == 3:
        volume = volume.permute(0, 3, 1, 2).contiguous()
        vox = vox[..., [2, 0, 1]]
    size = torch.tensor(volume.shape[1:], dtype=vox.dtype)
    g = (vox * (2 / (size - 1)) - 1).flip(-1)
    if len(shp) == 3:
        return F.grid_sample(volume[None], g[None], mode=mode, padding_mode="zeros", align_corners=True)[0]
    out = F.grid_sample(volume[None], g.reshape(1, -1, 1, 1, 3), mode=mode, padding_mode="zeros",
                        align_corners=True)
    return out[0, :, :, 0, 0].reshape((volume.shape[0],) + shp)


def _contrast(aged: AgedAnatomy, tpl: HeadTemplate, acq: Acquisition) -> np.ndarray:
    """Aged intensities with the site's grey matter / CSF levels (white matter stays 1)."""
    shift_gm = acq.gm - float(tpl.means[1])
    shift_csf = acq.csf - float(tpl.means[0])
    out = aged.intensity + tpl.prob[1] * shift_gm + tpl.prob[0] * shift_csf
    flat = out.reshape(-1)
    flat[aged.delta_idx] += aged.delta_prob[1] * shift_gm + aged.delta_prob[0] * shift_csf
    return out


@dataclass
class Scan:
    """One acquired scan on its stored grid: image (scanner units), labels, ageing map, grid."""

    image: np.ndarray
    labels: np.ndarray
    ageing_map: np.ndarray
    grid: Grid


def _coordinates(tpl: HeadTemplate, aged: AgedAnatomy, pose: Pose, grid: Grid, acq: Acquisition):
    """Template voxel coordinates (n_z*n_sub, nx, ny, 3) sampled by each acquisition point, and the
    ventricular displacement (mm) there; computed on a 4x coarser in-plane grid and interpolated."""
    centre_t = tpl.brain_centre
    centre = centre_t + np.asarray(pose.shift_mm)
    inv_lin = np.diag(1.0 / np.asarray(pose.scale)) @ _rotation(pose.rotation_deg).T
    tpl_inv = np.linalg.inv(tpl.affine)
    nx, ny = grid.acq_shape
    nz = grid.shape[2]
    cx, cy = int(np.ceil((nx - 1) / 4)) + 1, int(np.ceil((ny - 1) / 4)) + 1
    ii, jj = np.meshgrid(np.linspace(0, nx - 1, cx), np.linspace(0, ny - 1, cy), indexing="ij")
    zpos = (np.arange(nz)[:, None] + grid.sub_offsets[None, :] / acq.slice_spacing_mm).ravel()
    vox = np.stack([np.broadcast_to(ii[None], (len(zpos), cx, cy)), np.broadcast_to(jj[None], (len(zpos), cx, cy)),
                    np.broadcast_to(zpos[:, None, None], (len(zpos), cx, cy))], axis=-1)
    world = vox @ grid.acq_affine[:3, :3].T + grid.acq_affine[:3, 3]
    xt = (world - centre) @ inv_lin.T + centre_t
    if pose.warp_mm > 0:
        lo, hi = world.reshape(-1, 3).min(0), world.reshape(-1, 3).max(0)
        u = _smooth_field(pose.warp_seed, 3, 6, (8, 8, 8)).numpy() * pose.warp_mm
        rel = (world - lo) / np.maximum(hi - lo, 1e-6) * 7
        ut = _sample(torch.from_numpy(u), torch.from_numpy(rel.astype(np.float32))).numpy()
        xt = xt + np.moveaxis(ut, 0, -1)
    tv = (xt @ tpl_inv[:3, :3].T + tpl_inv[:3, 3]).astype(np.float32)
    g = _sample(torch.from_numpy(tpl.geometry), torch.from_numpy(tv.reshape(-1, 3))).numpy()
    g = g.reshape((4,) + tv.shape[:-1])
    dshift = ventricle_displacement(g[0], aged.ventricle_shift)
    src = tv - np.moveaxis(g[1:] * dshift[None], 0, -1) / np.abs(np.diag(tpl.affine)[:3])
    # grid_sample coordinates for a volume laid out (C, Z, X, Y): last axis = (y, x, z) in [-1, 1]
    norm = src / (np.asarray(tpl.shape, dtype=np.float32) - 1) * 2 - 1
    coarse = np.concatenate([np.moveaxis(norm[..., [1, 0, 2]], -1, 1), np.abs(dshift)[:, None]], axis=1)
    fine = F.interpolate(torch.from_numpy(coarse.astype(np.float32)), size=(nx, ny), mode="bilinear",
                         align_corners=True)  # (nzs, 4, nx, ny)
    return fine[:, :3].permute(0, 2, 3, 1).contiguous(), fine[:, 3]


def _sample_zxy(volume: np.ndarray, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample (C, X, Y, Z) ``volume`` at grid_sample coordinates from :func:`_coordinates`.

    The volume is laid out (C, Z, X, Y) so that memory order follows the points' order
    (slices of in-plane rows): several times faster than strided access.
    """
    vol = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, -1, 1)))
    return F.grid_sample(vol[None], grid[None], mode=mode, padding_mode="zeros", align_corners=True)[0]


def acquire(tpl: HeadTemplate, aged: AgedAnatomy, pose: Pose, acq: Acquisition) -> Scan:
    """Image the aged anatomy with the pose and protocol; returns the scan on its stored grid.

    The ageing map is max(relabelled tissue fraction, ventricular displacement / 3 mm), 0..1,
    rounded to 0.01 with values under 0.02 set to 0.
    """
    torch.set_num_threads(1)
    grid = make_grid(acq, tpl.brain_centre + np.array([0.0, 0.0, 8.0]))
    pts, shift = _coordinates(tpl, aged, pose, grid, acq)
    nzs, nx, ny = shift.shape
    n_sub = len(grid.sub_offsets)
    nz = nzs // n_sub
    samp = _sample_zxy(np.stack([_contrast(aged, tpl, acq), aged.relabel]), pts)  # (2, nzs, nx, ny)
    samp[1] = torch.maximum(samp[1], torch.clamp(shift / 3.0, 0, 1))
    samp = samp.reshape(2, nz, n_sub, nx, ny).mean(dim=2)  # box slice profile
    mid = pts.reshape(nz, n_sub, nx, ny, 3)[:, n_sub // 2]
    lab = _sample_zxy(aged.labels[None].astype(np.float32), mid, mode="nearest")  # (1, nz, nx, ny)
    if acq.style == "clinical2d":
        samp = F.interpolate(samp.permute(1, 0, 2, 3), size=grid.shape[:2], mode="bilinear",
                             align_corners=False).permute(1, 0, 2, 3)
        lab = F.interpolate(lab.permute(1, 0, 2, 3), size=grid.shape[:2], mode="nearest").permute(1, 0, 2, 3)
    image = samp[0].permute(1, 2, 0)
    shape = tuple(image.shape)
    bias = torch.exp(_smooth_field(acq.seed, 1, 4, shape)[0] * acq.bias)
    gen = torch.Generator().manual_seed(acq.seed + 1)
    n1 = torch.randn(shape, generator=gen) * acq.noise
    n2 = torch.randn(shape, generator=gen) * acq.noise
    image = torch.sqrt((image * bias + n1) ** 2 + n2**2) * acq.gain
    ageing = samp[1].permute(1, 2, 0).numpy()
    ageing = np.where(ageing < 0.02, 0.0, np.round(ageing, 2)).astype(np.float32)  # compact, exact ground truth
    return Scan(image=image.numpy(), labels=lab[0].permute(1, 2, 0).numpy().astype(np.uint8), ageing_map=ageing,
                grid=grid)
