"""Model packages: fold weights as safetensors plus a JSON model card.

Layout of a package directory::

    model_card.json       architecture, PreprocessSpec, calibration, data summary, sha256 per file
    fold0.safetensors     one file per cross-validation fold model
    fold1.safetensors ...

Loading never unpickles: only ``.safetensors`` files are read, every file's
sha256 is checked against the card, and pickle-based checkpoints are refused.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .errors import ChecksumError, ModelPackageError, UnsafeWeightsError
from .model import ARCHITECTURE, DEFAULT_CONFIG, build_model
from .spec import PreprocessSpec

PACKAGE_FORMAT = "slicer-brainage-model"
PACKAGE_FORMAT_VERSION = 1
CARD_NAME = "model_card.json"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar", ".joblib"}


@dataclass
class ModelCard:
    """Everything needed to use a model correctly, stored beside its weights."""

    name: str
    version: str
    description: str = ""
    architecture: dict = field(default_factory=lambda: {"name": ARCHITECTURE, "config": dict(DEFAULT_CONFIG)})
    preprocess: dict = field(default_factory=lambda: PreprocessSpec().to_dict())
    skull_strip: dict = field(default_factory=lambda: {"backend": "hd-bet"})
    calibration: dict | None = None
    training_data: dict = field(default_factory=dict)
    folds: list[dict] = field(default_factory=list)  # {"file", "sha256", "metrics"}
    intended_use: str = "research use only; not a medical device"
    synthetic_demo: bool = False
    created: str = ""
    software_version: str = __version__
    format: str = PACKAGE_FORMAT
    format_version: int = PACKAGE_FORMAT_VERSION

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.preprocess)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ModelPackage:
    """A loaded package: its card and one network per fold (eval mode)."""

    card: ModelCard
    models: list[nn.Module]
    path: Path | None = None


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeWeightsError(
            f"{path.name}: pickle-based weight files ({path.suffix}) can run arbitrary code and are refused. "
            "Convert the checkpoint to a model package with safetensors (brainage export) from a trusted source."
        )
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise UnsafeWeightsError(f"{path.name}: looks like a pickle / torch.save archive, not safetensors; refused.")


def save_package(
    directory: str | os.PathLike, models: list[nn.Module], card: ModelCard, *, overwrite: bool = False
) -> Path:
    """Write a package directory atomically (built in a temp dir, then renamed)."""
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; choose another output or pass overwrite=True")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        old_folds = {f.get("file"): f for f in card.folds}
        folds = []
        for index, model in enumerate(models):
            name = f"fold{index}.safetensors"
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / name), metadata={"format": f"{PACKAGE_FORMAT}/fold{index}"})  # one key: byte-identical files for identical weights
            entry = {**old_folds.get(name, {}), "file": name, "sha256": sha256_of(tmp / name)}
            folds.append(entry)
        card.folds = folds
        card.created = card.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        (tmp / CARD_NAME).write_text(json.dumps(asdict(card), indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return directory


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read and check a package's card (no weights loaded)."""
    path = Path(path)
    if path.is_file():
        _refuse_pickle(path)
        raise ModelPackageError(f"{path}: a model package is a folder holding {CARD_NAME}; pass the folder")
    card_path = path / CARD_NAME
    if not card_path.is_file():
        raise ModelPackageError(
            f"{path}: no {CARD_NAME} found. Pass a SlicerBrainAge model package folder "
            "(made by `brainage train` or downloaded from the model registry)."
        )
    try:
        data = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelPackageError(f"{card_path}: not valid JSON ({exc})") from exc
    if data.get("format") != PACKAGE_FORMAT:
        raise ModelPackageError(f"{card_path}: not a SlicerBrainAge model card (format {data.get('format')!r})")
    if int(data.get("format_version", 0)) > PACKAGE_FORMAT_VERSION:
        raise ModelPackageError(
            f"{card_path}: package format {data.get('format_version')} is newer than this SlicerBrainAge "
            f"({__version__}) reads (format {PACKAGE_FORMAT_VERSION}); update the extension."
        )
    card = ModelCard.from_dict(data)
    if card.architecture.get("name") != ARCHITECTURE:
        raise ModelPackageError(f"{card_path}: unknown architecture {card.architecture.get('name')!r}")
    try:
        card.preprocess_spec
    except (TypeError, ValueError) as exc:
        raise ModelPackageError(f"{card_path}: {exc}") from exc
    if not card.folds:
        raise ModelPackageError(f"{card_path}: the card lists no fold weights")
    return card


def write_card(path: str | os.PathLike, card: ModelCard) -> Path:
    """Replace a package's card atomically (e.g. to store a site calibration); weights are untouched."""
    from .io import atomic_path

    target = Path(path) / CARD_NAME
    read_card(path)  # only an existing, valid package is changed
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(asdict(card), indent=2))
    return target


def load_package(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> ModelPackage:
    """Load every fold model of a package, verifying checksums; never unpickles."""
    path = Path(path)
    card = read_card(path)
    models = []
    template = build_model(card.architecture.get("config"))  # built once: a deep copy per fold is ~5x faster
    for index, fold in enumerate(card.folds):
        weight_path = path / fold["file"]
        if not weight_path.is_file():
            raise ModelPackageError(f"{weight_path}: listed in the model card but missing")
        _refuse_pickle(weight_path)
        actual = sha256_of(weight_path)
        if actual != fold.get("sha256"):
            raise ChecksumError(
                f"{weight_path.name}: sha256 {actual[:12]}... does not match the card ({str(fold.get('sha256'))[:12]}...). "
                "The file is corrupt or was changed; download or copy the package again."
            )
        last = index == len(card.folds) - 1
        model = template if last else copy.deepcopy(template)
        try:
            model.load_state_dict(load_file(str(weight_path), device="cpu"), strict=True)
        except RuntimeError as exc:
            raise ModelPackageError(f"{weight_path.name}: weights do not fit the card's architecture ({exc})") from exc
        models.append(model.to(device).eval())
    return ModelPackage(card=card, models=models, path=path)
