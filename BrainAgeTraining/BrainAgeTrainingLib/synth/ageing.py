"""The ageing model: literature-based rates, tissue relabelling and the ventricular warp.

Anatomy is aged from a template's reference age to a subject's *biological* age
in template space, by

1. **cortical thinning** - grey matter within ``t`` mm of the pial surface becomes
   CSF (sulci widen); ``t`` grows about 0.01 mm/yr (0.4 %/yr of a 2.5 mm cortex) and
   faster after 60. Cross-sectional thinning of 0.1-0.2 mm per decade is reported by
   Salat et al. 2004 (Cereb Cortex 14:721) and longitudinal 0.3-0.6 %/yr rising with
   age by Storsve et al. 2014 (J Neurosci 34:8488) and Fjell et al. 2009 (J Neurosci 29:15223).
2. **white-matter boundary** - the grey/white boundary moves into the cortex
   (myelination) until about 45 and back afterwards, so white matter volume peaks in
   mid-life (Bartzokis et al. 2001, Arch Gen Psychiatry 58:461; Walhovd et al. 2005,
   Neurobiol Aging 26:1261; Westlye et al. 2010, Cereb Cortex 20:2055) and grey/white
   contrast blurs with age (Salat et al. 2009, NeuroImage 48:21).
3. **ventricular enlargement** - a smooth, invertible displacement field pushes the
   lateral and third ventricle walls outward into periventricular tissue (decaying
   as exp(-d/lambda) away from the wall). Volume grows about 1.2 %/yr in young adults
   and accelerates after 50 to about 5 %/yr at 85 (Resnick et al. 2003, J Neurosci
   23:3295: about 1.5 mL/yr at 59-85; Fjell et al. 2009: 3-5 %/yr in healthy older
   adults; Scahill et al. 2003, Arch Neurol 60:989: acceleration with age), i.e. the
   lateral ventricles roughly triple between 25 and 80.
4. **medial temporal atrophy** - extra thinning weighted by a hippocampus/amygdala
   map: about 0.2 %/yr in mid-life rising to over 1 %/yr after 70 in healthy ageing
   (Fraser et al. 2015, NeuroImage 112:364); in AD-like subjects hippocampal loss is
   3-5 %/yr (Barnes et al. 2009, Neurobiol Aging 30:1711: 4.7 vs 1.4 %/yr), modelled
   as up to 2 mm of extra MTL thinning plus 0.6 mm temporo-parietal, converted tissue
   next to the temporal horn joining the ventricles.
5. **white-matter hypointensities** - optional periventricular patches, T1-dark,
   whose load rises steeply after 60 (de Leeuw et al. 2001, JNNP 70:9: present in
   most people over 70).

Everything is a function of the biological age, so anatomy follows it exactly; the
template is taken to show its reference age (e.g. 25 y for MNI152).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import CSF, GM, WM, HeadTemplate


@dataclass(frozen=True)
class AgeingRates:
    """Rates of the ageing model (see the module docstring for their sources)."""

    ventricle_rate: float = 0.012  # relative expansion per year before the knee
    ventricle_knee: float = 50.0  # age (y) after which expansion accelerates
    ventricle_accel: float = 0.0012  # added rate per year past the knee (-> ~5.4 %/yr at 85)
    thinning_rate: float = 0.012  # mm/yr of cortex lost at the pial side
    thinning_knee: float = 60.0
    thinning_accel: float = 0.0003  # mm/yr^2 past the knee
    wm_peak_age: float = 45.0  # white matter volume peaks here
    wm_boundary_k: float = 4.0e-4  # mm/yr^2 before the peak: boundary = -k (age - peak)^2
    wm_boundary_k_after: float = 1.5e-4  # mm/yr^2 after it (later WM loss is mostly periventricular)
    mtl_knee: float = 50.0  # healthy medial temporal loss starts
    mtl_extra_at_85: float = 0.8  # mm of extra MTL thinning at 85 in healthy ageing
    ad_mtl_mm: float = 2.0  # extra MTL thinning (mm) at AD severity 1
    ad_temporal_mm: float = 0.6  # extra temporo-parietal thinning (mm) at severity 1
    ad_ventricle_gain: float = 0.4  # ventricle volume x (1 + gain * severity)
    wmh_midpoint: float = 74.0  # age (y) of half-maximal WMH load
    wmh_width: float = 6.0
    wmh_max_fraction: float = 0.20  # of the periventricular white-matter band


def ventricle_log_ratio(age: float, r: AgeingRates) -> float:
    """Cumulative log ventricular volume at ``age`` (integral of the annual rate)."""
    past = max(age - r.ventricle_knee, 0.0)
    return r.ventricle_rate * age + 0.5 * r.ventricle_accel * past**2


def ventricle_volume_ratio(age: float, reference_age: float, r: AgeingRates, severity: float = 0.0) -> float:
    """Ventricle volume at ``age`` over that at ``reference_age`` (x AD factor)."""
    ratio = np.exp(ventricle_log_ratio(age, r) - ventricle_log_ratio(reference_age, r))
    return float(ratio * (1.0 + r.ad_ventricle_gain * severity))


def cortical_thinning_mm(age: float, r: AgeingRates) -> float:
    """Cumulative cortical thinning (mm) since birth (only differences are used)."""
    past = max(age - r.thinning_knee, 0.0)
    return r.thinning_rate * age + 0.5 * r.thinning_accel * past**2


def wm_boundary_mm(age: float, r: AgeingRates) -> float:
    """White matter boundary position (mm, + = grown into the cortex), peaking at ``wm_peak_age``."""
    k = r.wm_boundary_k if age < r.wm_peak_age else r.wm_boundary_k_after
    return -k * (age - r.wm_peak_age) ** 2


def mtl_extra_mm(age: float, r: AgeingRates) -> float:
    """Extra medial temporal thinning (mm) in healthy ageing, quadratic after the knee."""
    past = max(age - r.mtl_knee, 0.0)
    return r.mtl_extra_at_85 * (past / (85.0 - r.mtl_knee)) ** 2


def wmh_load(age: float, r: AgeingRates) -> float:
    """Fraction of the periventricular white-matter band that is hypointense."""
    return float(r.wmh_max_fraction / (1.0 + np.exp(-(age - r.wmh_midpoint) / r.wmh_width)))


@dataclass(frozen=True)
class AgeingBands:
    """Voxels the relabelling can touch (flat indices into the template grid), found once per template."""

    idx: np.ndarray  # flat indices: cortex +-6 mm of the pial surface, or +-3 mm of the grey/white boundary
    prob: np.ndarray  # (3, n) tissue maps there
    pial: np.ndarray
    gmwm: np.ndarray
    vent_dist: np.ndarray
    mtl: np.ndarray
    temporal: np.ndarray
    wmh_idx: np.ndarray  # periventricular white matter (0-14 mm from the ventricle wall)
    wmh_dist: np.ndarray
    wmh_coords: np.ndarray  # (3, m) voxel coordinates of wmh_idx
    labels: np.ndarray  # template hard labels (0 out, 1 CSF, 2 GM, 3 WM, 4 ventricle)
    vent_sorted: np.ndarray  # sorted wall distances of brain voxels within 40 mm (for the volume solve)

    @classmethod
    def from_template(cls, tpl: HeadTemplate) -> "AgeingBands":
        sel = ((tpl.pial != 0) & (np.abs(tpl.pial) <= 6.0)) | ((tpl.gmwm != 0) & (np.abs(tpl.gmwm) <= 3.0))
        sel &= tpl.vent < 0.5
        idx = np.flatnonzero(sel)
        labels = tpl.labels
        wsel = (labels == 3) & (tpl.vent_dist > 0) & (tpl.vent_dist < 14.0)
        widx = np.flatnonzero(wsel)
        flat = lambda a: a.reshape(-1)[idx]  # noqa: E731
        return cls(
            idx=idx, prob=tpl.prob.reshape(3, -1)[:, idx], pial=flat(tpl.pial), gmwm=flat(tpl.gmwm),
            vent_dist=flat(tpl.vent_dist), mtl=flat(tpl.mtl), temporal=flat(tpl.temporal), wmh_idx=widx,
            wmh_dist=tpl.vent_dist.reshape(-1)[widx],
            wmh_coords=np.array(np.unravel_index(widx, tpl.shape), dtype=np.float32), labels=labels,
            vent_sorted=np.sort(tpl.vent_dist[(np.abs(tpl.vent_dist) < 40) & (tpl.mask > 0.5)]),
        )


@dataclass
class AgedAnatomy:
    """A template aged to one subject, still in template space.

    ``intensity`` (template intensities, relabelled), ``labels`` (0 outside the brain,
    1 CSF, 2 GM, 3 WM, 4 ventricle, 5 WM hypointensity), ``relabel`` (0..1, fraction of
    tissue whose class ageing changed), ``delta_idx``/``delta_prob`` (the changed
    tissue maps, for scanner contrast) and ``ventricle_shift`` (mm, the wall
    displacement applied when the anatomy is sampled, see :func:`ventricle_displacement`).
    """

    intensity: np.ndarray
    labels: np.ndarray
    relabel: np.ndarray
    delta_idx: np.ndarray
    delta_prob: np.ndarray
    ventricle_shift: float
    amounts: dict


LABELS = {0: "background", 1: "CSF", 2: "grey matter", 3: "white matter", 4: "lateral/third ventricles",
          5: "white matter hypointensity"}


def _ramp(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def ventricle_volume_curve(vent_sorted: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ventricle volume (voxels) after moving the wall by each alpha (mm).

    A voxel whose centre is at signed wall distance d covers [d - 0.5, d + 0.5], so
    V(alpha) = sum clip(alpha - d + 0.5, 0, 1): continuous in alpha, V(0) = the template's.
    """
    d = vent_sorted
    cum = np.r_[0.0, np.cumsum(d, dtype=np.float64)]
    lo = np.searchsorted(d, alphas - 0.5)
    hi = np.searchsorted(d, alphas + 0.5)
    return lo + (alphas + 0.5) * (hi - lo) - (cum[hi] - cum[lo])


def solve_ventricle_shift(bands: AgeingBands, ratio: float) -> float:
    """Wall shift alpha (mm) that gives ``ratio`` x the template's ventricle volume."""
    alphas = np.linspace(-8.0, 30.0, 1901)
    vol = ventricle_volume_curve(bands.vent_sorted, alphas)
    v0 = float(ventricle_volume_curve(bands.vent_sorted, np.zeros(1))[0])
    return float(np.interp(ratio * v0, vol, alphas))


def ventricle_displacement(e: np.ndarray, alpha: float, clamp: float = 1.0) -> np.ndarray:
    """Pull-back displacement (mm, along the outward normal) at signed wall distance ``e``.

    The forward map moves a point at distance d to d + alpha * exp(-max(d, 0) / lam)
    (lam = max(12, 1.3 |alpha|) keeps it invertible); this returns e - f^-1(e), with
    sources kept at least ``clamp`` mm inside the old ventricle so the new ventricle is
    filled with CSF and never with tissue from the opposite wall.
    """
    if abs(alpha) < 1e-6:
        return np.zeros_like(e)
    lam = max(12.0, 1.3 * abs(alpha))
    d = np.linspace(-40.0, 80.0, 2401)
    f = d + alpha * np.exp(-np.maximum(d, 0.0) / lam)
    src = np.interp(e, f, d)
    if alpha > 0:
        src = np.maximum(src, np.minimum(e, -clamp))
    return (e - src).astype(np.float32)


def age_anatomy(
    tpl: HeadTemplate,
    bands: AgeingBands,
    biological_age: float,
    *,
    severity: float = 0.0,
    wmh: bool = True,
    rng: np.random.Generator | None = None,
    rates: AgeingRates = AgeingRates(),
) -> AgedAnatomy:
    """Relabel tissue for ``biological_age`` (and AD-like ``severity`` 0..1) in template space."""
    rng = rng or np.random.default_rng(0)
    a0 = tpl.reference_age
    thin = cortical_thinning_mm(biological_age, rates) - cortical_thinning_mm(a0, rates)
    mtl = mtl_extra_mm(biological_age, rates) - mtl_extra_mm(a0, rates)
    shift = wm_boundary_mm(biological_age, rates) - wm_boundary_mm(a0, rates)
    old = bands.prob
    prob = old.copy()
    # 1 + 4: pial-side thinning (or thickening when younger than the template), MTL-weighted
    t_local = thin + (mtl + rates.ad_mtl_mm * severity) * bands.mtl + rates.ad_temporal_mm * severity * bands.temporal
    f = np.where(bands.pial > 0, _ramp(t_local - bands.pial + 1.0), 0.0)
    to_csf = f * prob[GM]
    g = np.where(bands.pial < 0, _ramp(-t_local + bands.pial + 1.0), 0.0)
    to_gm = g * prob[CSF]
    prob[GM] += to_gm - to_csf
    prob[CSF] += to_csf - to_gm
    # 2: grey/white boundary shift (myelination until the peak, then receding)
    if shift > 0:
        h = np.where(bands.gmwm < 0, _ramp(shift + bands.gmwm + 1.0), 0.0) * prob[GM]
    else:
        h = -np.where(bands.gmwm > 0, _ramp(-shift - bands.gmwm + 1.0), 0.0) * prob[WM]
    prob[WM] += h
    prob[GM] -= h
    delta = (prob - old).astype(np.float32)
    intensity = tpl.head.copy().reshape(-1)
    intensity[bands.idx] += tpl.means @ delta
    labels = bands.labels.copy().reshape(-1)
    inside = labels[bands.idx] > 0
    new_lab = np.argmax(prob, axis=0).astype(np.uint8) + 1
    # medial temporal atrophy opening onto the temporal horn enlarges the ventricle
    new_lab[(new_lab == 1) & (bands.vent_dist <= 3.0) & (to_csf > 0.5) & (bands.mtl > 0.2)] = 4
    labels[bands.idx] = np.where(inside, new_lab, 0)
    relabel = np.zeros(intensity.shape, dtype=np.float32)
    relabel[bands.idx] = np.clip(0.5 * np.abs(delta).sum(axis=0), 0, 1)
    # 5: white-matter hypointensities (periventricular, patchy)
    load = wmh_load(biological_age, rates) * (1.0 + 0.5 * severity) if wmh else 0.0
    if load > 0.005 and len(bands.wmh_idx):
        coarse = rng.standard_normal(tuple(int(np.ceil(s / 5)) + 2 for s in tpl.shape)).astype(np.float32)
        noise = ndimage.map_coordinates(coarse, bands.wmh_coords / 5.0, order=1, prefilter=False)
        score = np.exp(-bands.wmh_dist / 4.0) + 0.6 * noise
        thr = np.quantile(score, 1.0 - load)
        w = _ramp((score - thr) / 0.15).astype(np.float32)
        dark = 0.6 * (tpl.means[WM] - tpl.means[GM])  # T1-hypointense, between white and grey matter
        intensity[bands.wmh_idx] -= w * dark
        labels[bands.wmh_idx[w > 0.5]] = 5
        relabel[bands.wmh_idx] = np.maximum(relabel[bands.wmh_idx], w)
    ratio = ventricle_volume_ratio(biological_age, a0, rates, severity)
    alpha = solve_ventricle_shift(bands, ratio)
    amounts = {
        "cortical_thinning_mm": round(float(thin), 3),
        "wm_boundary_shift_mm": round(float(shift), 3),
        "mtl_extra_mm": round(float(mtl + rates.ad_mtl_mm * severity), 3),
        "ventricle_volume_ratio": round(float(ratio), 3),
        "ventricle_wall_shift_mm": round(float(alpha), 3),
        "wmh_fraction": round(float(load), 3),
    }
    return AgedAnatomy(
        intensity=intensity.reshape(tpl.shape), labels=labels.reshape(tpl.shape), relabel=relabel.reshape(tpl.shape),
        delta_idx=bands.idx, delta_prob=delta, ventricle_shift=alpha, amounts=amounts,
    )
