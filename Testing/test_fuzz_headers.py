"""Issue 13, item 4: fuzzed NIfTI files never crash ``brainage predict`` and never get an age the checks refuse.

Hypothesis writes NIfTI-1 files byte by byte: 1 to 5 dimensions (and a ``dim[0]`` that disagrees),
voxel sizes including 0, negative, NaN, infinite, tiny and huge, qform/sform codes valid or not,
quaternions and sform rows, ``scl_slope``/``scl_inter`` (0, NaN, inf, huge), every NIfTI data type
plus colour, complex and unknown codes, voxels (a head, noise, a constant, NaN spots, extremes),
odd ``vox_offset``, extensions and magic, gzip or not, and files cut anywhere. Half the examples
are plausible small heads (9-14 mm voxels, every orientation, oblique or not), so the whole
pipeline behind the checks (skull strip ``none``, resampling, QC, the network) runs too.

Each file goes through ``brainage predict`` in-process with the tiny ``small_package`` model. The
properties: no exception and no traceback; exit status 0 exactly when the row has an age, else 1
with a named BrainAge error in the row; no age when ``load_volume`` (the checks) refuses the file;
and a file that gets an age is, read independently with nibabel, one finite, non-constant 3D
grayscale volume with voxel sizes of 0.05-20 mm that its header really states.
"""

import contextlib
import csv
import gzip
import io
import math

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from BrainAgeLib import errors
from BrainAgeLib.cli import main
from BrainAgeLib.io import load_volume

#: NIfTI data type codes nibabel reads as numbers.
NUMERIC = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 256: np.int8,
           512: np.uint16, 768: np.uint32, 1024: np.int64, 1280: np.uint64}
#: Codes that are not grayscale numbers: complex64/128, RGB24, RGBA32, 'binary', none, not a code.
ODD = [32, 1792, 128, 2304, 1, 0, 4096]
ODD_FLOATS = [0.0, -1.0, math.nan, math.inf, -math.inf, 1e-6, 0.04, 25.0, 1e9]


def _names(cls) -> set[str]:
    return {cls.__name__}.union(*(_names(sub) for sub in cls.__subclasses__()))


#: The errors a refused scan's row may name: BrainAgeLib's own, each with a message saying what to do.
ERROR_NAMES = _names(errors.BrainAgeError)


class Nifti:
    """A file's bytes, whether to gzip them, and what was drawn (shown when an example fails)."""

    def __init__(self, raw: bytes, gz: bool, note: str) -> None:
        self.raw, self.gz, self.note = raw, gz, note

    def __repr__(self) -> str:
        return f"Nifti({self.note}, {len(self.raw)} bytes, gz={self.gz})"


def voxel_bytes(shape, dtype, content: str, seed: int, limit: int = 60_000) -> bytes:
    """Voxels in NIfTI (Fortran) order; at most ``limit`` values, so huge headers give short files."""
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    if np.dtype(dtype).kind not in "iuf" or n > limit or n == 0:
        return rng.bytes(min(n, limit) * max(np.dtype(dtype).itemsize, 1))
    full = tuple(shape) + (1,) * (3 - len(shape)) if len(shape) < 3 else tuple(shape)
    grid = np.indices(full[:3]).astype(float)
    r = sum(((grid[i] - (full[i] - 1) / 2) / (0.4 * full[i])) ** 2 for i in range(3))
    head = np.where(r < 1, 100 + 20 * rng.standard_normal(full[:3]), 0)
    values = {
        "head": np.broadcast_to(head.reshape(head.shape + (1,) * (len(full) - 3)), full),
        "noise": rng.normal(50, 30, full),
        "constant": np.full(full, 7.0),
        "extreme": np.full(full, 1e300) * rng.choice([-1, 1], full),
    }[content if content != "nan-spot" else "head"].astype(float)
    if np.dtype(dtype).kind != "f":
        values = np.clip(values, np.iinfo(dtype).min, np.iinfo(dtype).max)
    with np.errstate(over="ignore"):
        data = values.astype(dtype)  # 1e300 becomes inf in float32
    if content == "nan-spot" and np.dtype(dtype).kind == "f":
        data.flat[n // 2] = np.nan
    return data.reshape(shape).tobytes(order="F")


def nifti_bytes(dims, pixdim, code, *, dim0=None, qform=0, sform=0, quatern=(0, 0, 0), offset=(0, 0, 0),
                srows=None, slope=1.0, inter=0.0, voxels=b"", vox_offset=352, extension=b"\0\0\0\0", magic=b"n+1\0") -> bytes:
    hdr = nib.Nifti1Header()
    dim = np.ones(8, dtype=np.int16)
    dim[0] = len(dims) if dim0 is None else dim0
    dim[1 : 1 + len(dims)] = dims
    hdr["dim"] = dim
    if code in NUMERIC or code in (32, 1792, 128, 2304):
        hdr.set_data_dtype(code)
    else:
        hdr["datatype"], hdr["bitpix"] = code, 8
    hdr["pixdim"] = [1.0, *pixdim, *[1.0] * (7 - len(pixdim))]
    hdr["qform_code"], hdr["sform_code"] = qform, sform
    hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = quatern
    hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = offset
    if srows is not None:
        hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = srows
    hdr["scl_slope"], hdr["scl_inter"] = slope, inter
    hdr["vox_offset"] = vox_offset
    hdr["magic"] = magic
    return hdr.binaryblock + extension + voxels


def affine_rows(draw, zooms):
    """sform rows of an axis permutation with flips, times the zooms, optionally rotated (oblique)."""
    order = draw(st.permutations([0, 1, 2]))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    matrix = np.zeros((3, 3))
    for column, (axis, sign) in enumerate(zip(order, signs)):
        matrix[axis, column] = sign * zooms[column]
    angle = draw(st.sampled_from([0.0, 0.0, 0.2, 0.6]))
    rotation = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    matrix = rotation @ matrix
    return [[*matrix[i], draw(st.floats(-120, 120))] for i in range(3)]


@st.composite
def plausible_heads(draw):
    """Small heads that a clinician could export: most pass the checks, so the whole pipeline runs."""
    ndim4 = draw(st.booleans())
    dims = [draw(st.integers(12, 16)) for _ in range(3)] + ([1] if ndim4 else [])
    zooms = [draw(st.floats(10.0, 12.4)) for _ in range(3)]
    thick = draw(st.sampled_from([None, None, 0, 1, 2]))  # thick slices along one voxel axis, as clinical 2D scans
    if thick is not None:
        zooms[thick] *= 1.6
    code = draw(st.sampled_from([2, 4, 16, 64, 512]))
    qform, sform = draw(st.sampled_from([(0, 0), (1, 0), (0, 1), (1, 2), (2, 4)]))
    content = draw(st.sampled_from(["head", "head", "head", "noise", "nan-spot", "constant"]))
    slope, inter = draw(st.sampled_from([(1.0, 0.0), (0.0, 0.0), (2.0, 5.0), (math.nan, 0.0), (1e-20, 0.0)]))
    quatern = draw(st.sampled_from([(0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.5), (0.0, 0.7071, 0.0)]))
    srows = affine_rows(draw, zooms)
    raw = nifti_bytes(dims, zooms, code, qform=qform, sform=sform, quatern=quatern, offset=(-60.0, -70.0, -40.0),
                      srows=srows, slope=slope, inter=inter,
                      voxels=voxel_bytes(dims, NUMERIC[code], content, draw(st.integers(0, 2**16))))
    raw = truncate(draw, raw)
    return Nifti(raw, draw(st.booleans()), f"plausible dims={dims} zooms={np.round(zooms, 2).tolist()} code={code} "
                                           f"q/s={qform}/{sform} srows={np.round(srows, 3).tolist()} {content} slope/inter={slope}/{inter} "
                                           f"quatern={quatern}")


def truncate(draw, raw: bytes) -> bytes:
    if draw(st.sampled_from([False] * 5 + [True])):  # about one file in six is cut somewhere
        return raw[: draw(st.integers(0, len(raw) - 1))]
    return raw


@st.composite
def wild_files(draw):
    """Anything the header can say, consistent or not."""
    ndim = draw(st.integers(1, 5))
    dims = [draw(st.one_of(st.integers(1, 12), st.sampled_from([0, 2, 32767]))) for _ in range(ndim)]
    dim0 = draw(st.sampled_from([None, None, None, 0, 3, 6, 7, 9, -1]))
    pixdim = [draw(st.one_of(st.sampled_from(ODD_FLOATS), st.floats(-30, 30))) for _ in range(ndim)]
    code = draw(st.sampled_from(list(NUMERIC) + ODD))
    qform, sform = draw(st.integers(-1, 6)), draw(st.integers(-1, 6))
    unit = st.one_of(st.floats(-1.5, 1.5), st.sampled_from([math.nan, math.inf]))
    quatern = tuple(draw(unit) for _ in range(3))
    srows = draw(st.one_of(st.none(), st.lists(st.lists(st.one_of(st.floats(-40, 40), st.sampled_from(ODD_FLOATS)),
                                                         min_size=4, max_size=4), min_size=3, max_size=3)))
    slope = draw(st.sampled_from([1.0, 0.0, -2.0, math.nan, math.inf, 1e30, 1e-30]))
    inter = draw(st.sampled_from([0.0, 0.0, 10.0, math.nan, -1e30]))
    content = draw(st.sampled_from(["head", "noise", "constant", "nan-spot", "extreme"]))
    dtype = NUMERIC.get(code, np.uint8)
    raw = nifti_bytes(dims, pixdim, code, dim0=dim0, qform=qform, sform=sform, quatern=quatern, srows=srows,
                      slope=slope, inter=inter, voxels=voxel_bytes(dims, dtype, content, draw(st.integers(0, 2**16))),
                      vox_offset=draw(st.sampled_from([352, 352, 352, 0, 348, 4096, -8])),
                      extension=draw(st.sampled_from([b"\0\0\0\0", b"\1\0\0\0", b"\1\0\0\0\x10\0\0\0\4\0\0\0junkjunk"])),
                      magic=draw(st.sampled_from([b"n+1\0", b"n+1\0", b"ni1\0", b"xyz\0"])))
    raw = truncate(draw, raw)
    return Nifti(raw, draw(st.booleans()), f"wild dims={dims} dim0={dim0} pixdim={pixdim} code={code} q/s={qform}/{sform} "
                                           f"srows={srows} slope/inter={slope}/{inter} {content}")


def stated_voxel_sizes_ok(path) -> bool:
    """Independent of BrainAgeLib: nibabel's affine has voxel sizes of 0.05-20 mm, none invented from a zero pixdim."""
    image = nib.load(str(path))
    sizes = np.sqrt((np.asarray(image.affine[:3, :3], float) ** 2).sum(axis=0))
    with nib.openers.ImageOpener(str(path)) as f:
        raw = nib.Nifti1Header.from_fileobj(f, check=False)
    from_pixdim = image.header["sform_code"] == 0
    return bool(np.all(np.isfinite(image.affine)) and np.all((sizes >= 0.05) & (sizes <= 20))
                and not (from_pixdim and np.any(raw["pixdim"][1:4] == 0)))


def independently_valid(path) -> bool:
    """One finite, non-constant 3D grayscale volume (trailing singleton axes dropped), read with nibabel alone."""
    image = nib.load(str(path))
    dtype = image.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "iuf":
        return False
    data = np.asarray(image.dataobj, dtype=np.float32)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return (data.ndim == 3 and min(data.shape) >= 2 and bool(np.isfinite(data).all()) and data.max() > data.min()
            and stated_voxel_sizes_ok(path))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=60, deadline=None, database=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(nifti=st.one_of(plausible_heads(), wild_files()))
def test_fuzzed_files_never_crash_predict_and_never_get_an_age_the_checks_refuse(nifti, small_package, fuzz_dir):
    path = fuzz_dir / ("scan.nii.gz" if nifti.gz else "scan.nii")
    for old in fuzz_dir.iterdir():
        old.unlink()
    path.write_bytes(gzip.compress(nifti.raw, compresslevel=1) if nifti.gz else nifti.raw)
    out = fuzz_dir / "results.csv"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # an exception here fails the example with its traceback
        code = main(["predict", str(path), "--model", str(small_package), "--skull-strip", "none", "--out", str(out)])
    with open(out, newline="") as f:
        (row,) = list(csv.DictReader(f))
    aged = row["predicted_age"] not in ("", "nan")
    event("age" if aged else row["error"].split(":", 1)[0])  # pytest --hypothesis-show-statistics lists the outcomes
    assert "Traceback" not in stderr.getvalue(), stderr.getvalue()
    assert code == (0 if aged else 1) and aged == (row["error"] == ""), (code, row["error"])
    if not aged:  # refused with a named error that says why (not a bare IndexError or TypeError)
        name = row["error"].split(":", 1)[0]
        assert name in ERROR_NAMES or row["error"].startswith("failed QC: "), row["error"]
    try:
        load_volume(path)
    except errors.BrainAgeInputError as refused:
        assert not aged, f"an age for a file the checks refuse: {refused}"
        assert row["error"].startswith(f"{type(refused).__name__}: ")
    if aged:
        assert independently_valid(path), "an age for a file that is not one finite, non-constant 3D volume"



# --- each kind of bad header, once, with the error it gets ------------------------------------------

DIMS, ZOOMS = [12, 14, 12], [11.0, 11.0, 11.0]
AXIAL = [[11.0, 0.0, 0.0, -66.0], [0.0, 11.0, 0.0, -77.0], [0.0, 0.0, 11.0, -66.0]]
OBLIQUE = [[-10.0, 0.0, 0.0, 0.0], [0.0, -9.801, 3.814, 0.0], [0.0, -1.987, -18.817, 0.0]]  # 0.2 rad about R-L, thick S-I


def head(dims=DIMS, code=4, content="head", **header) -> bytes:
    """A small axial head (12 x 14 x 12 voxels of 11 mm, int16, sform) with some header fields changed."""
    header = {"sform": 1, "srows": AXIAL, **header}
    voxels = header.pop("voxels", None)
    if voxels is None:
        voxels = voxel_bytes(dims, NUMERIC.get(code, np.uint8), content, seed=0)
    return nifti_bytes(dims, header.pop("zooms", ZOOMS[: len(dims)] + [1.0] * (len(dims) - 3)), code, voxels=voxels, **header)


GOOD = head()
#: (kind, file bytes, gzip, the error class or None for an age, a piece of the message)
KINDS = [
    ("NaN scl_inter with a valid scl_slope", head(slope=1.0, inter=math.nan), False,
     "CorruptFileError", "HeaderDataError: Valid slope but invalid intercept nan"),
    ("RGB colour voxels", head(code=128, voxels=bytes(12 * 14 * 12 * 3)), False, "DataTypeError", "colour (RGB)"),
    ("complex voxels", head(code=32, voxels=bytes(12 * 14 * 12 * 8)), False, "DataTypeError", "complex numbers"),
    ("pixdim 0 and no sform", head(zooms=[11.0, 11.0, 0.0], sform=0, qform=1), False,
     "VoxelSizeError", "voxel size 0 along axis [2] (pixdim) and no sform"),
    ("pixdim NaN", head(zooms=[11.0, math.nan, 11.0], sform=0, qform=1), False, "VoxelSizeError", "outside 0.05-20.0 mm"),
    ("dimensions far beyond the file (32767^3 in 87 bytes)", nifti_bytes([32767] * 3, ZOOMS, 4, voxels=bytes(1000)), True,
     "CorruptFileError", "compressed file can hold: it is truncated or its header is wrong"),
    ("voxel data cut short (.nii)", GOOD[:-100], False, "CorruptFileError", "Expected 4032 bytes, got 3932 bytes"),
    ("voxel data cut short (.nii.gz)", GOOD[:-100], True, "CorruptFileError", "Expected 4032 bytes, got 3932 bytes"),
    ("header cut short", GOOD[:200], False, "CorruptFileError", "Cannot work out file type"),
    ("empty file", b"", False, "CorruptFileError", "Empty file"),
    ("unknown data type code", head(code=4096, voxels=bytes(4032)), False, "CorruptFileError", "data code 4096 not recognized"),
    ("wrong magic", head(magic=b"xyz\0"), False, "CorruptFileError", "Cannot work out file type"),
    ("1 dimension", nifti_bytes([2000], [1.0], 4, voxels=voxel_bytes([2000], np.int16, "noise", 0)), False,
     "DimensionalityError", "has 1 dimensions"),
    ("5 dimensions", head(dims=[12, 14, 12, 2, 2]), False, "DimensionalityError", "has 5 dimensions"),
    ("dim[0] says 2 of 3 dimensions", head(dim0=2), False, "DimensionalityError", "has 2 dimensions (12, 14)"),
    ("a NaN voxel (float32)", head(code=16, content="nan-spot"), False, "NonFiniteVoxelsError", "1 voxels are NaN or infinite"),
    ("1e300 voxels (float64, infinite in float32)", head(code=64, content="extreme"), False,
     "NonFiniteVoxelsError", "voxels are NaN or infinite"),
    ("negative pixdim (read as its absolute value, as nibabel does)", head(zooms=[-11.0, 11.0, 11.0], sform=0, qform=1),
     False, None, ""),
    ("scl_slope 0 or infinite (no scaling, the NIfTI rule)", head(slope=math.inf), False, None, ""),
    ("4D with one volume", head(dims=[12, 14, 12, 1]), True, None, ""),
    ("qform only", head(sform=0, qform=1), False, None, ""),
    ("neither qform nor sform (pixdim)", head(sform=0, qform=0), False, None, ""),
    ("oblique thick slices (was a NameError in preprocessing)",
     head(zooms=[10.0, 10.0, 19.2], srows=OBLIQUE, code=2), False, None, ""),
]


@pytest.mark.parametrize("kind, raw, gz, error, says", KINDS, ids=[k[0] for k in KINDS])
def test_each_kind_of_header_gets_its_error_or_an_age(kind, raw, gz, error, says, small_package, tmp_path):
    path = tmp_path / ("scan.nii.gz" if gz else "scan.nii")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = tmp_path / "results.csv"
    code = main(["predict", str(path), "--model", str(small_package), "--skull-strip", "none", "--out", str(out)])
    with open(out, newline="") as f:
        (row,) = list(csv.DictReader(f))
    if error is None:
        assert code == 0 and row["error"] == "" and float(row["predicted_age"]) > 0, row["error"]
    else:
        assert code == 1 and row["predicted_age"] in ("", "nan")
        assert row["error"].startswith(f"{error}: {path}: ") and says in row["error"], row["error"]
