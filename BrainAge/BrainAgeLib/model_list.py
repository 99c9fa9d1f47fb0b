"""The models the Slicer panel lists, read with json only (no torch, no safetensors).

The panel must open in a Slicer that has none of the heavy packages yet, so this
module reads model cards as plain JSON; loading and checksum verification stay in
``package``/``model_registry``. Sources, in order: the bundled models of the registry
(``bundled_models``: ``Resources/Models.json`` entries with ``"bundled": true`` and a
``path``) and the packages in the per-user cache. The preselected model is the default
model (``bundled_models.default_model_path``: ``$BRAINAGE_DEFAULT_MODEL`` or the bundled
default), else the only non-demo model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .bundled_models import bundled_entries, default_model_path
from .user_cache import cache_dir

CARD_NAME = "model_card.json"
DEMO_LABEL = " (SYNTHETIC DEMO, not for clinical use)"


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the panel's model list."""

    label: str
    path: str  # package folder
    bundled: bool = False
    default: bool = False
    synthetic_demo: bool = False


def read_card_json(folder: str | os.PathLike) -> dict | None:
    """The model card of a package folder as a dict, None when absent or unreadable."""
    try:
        data = json.loads((Path(folder) / CARD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _choice(folder: str, bundled: bool, default_path: Path | None) -> ModelChoice | None:
    card = read_card_json(folder)
    if card is None:
        return None
    demo = bool(card.get("synthetic_demo"))
    label = f"{card.get('name', '?')} {card.get('version', '')}".strip() + (" (bundled)" if bundled else "")
    is_default = default_path is not None and os.path.realpath(folder) == os.path.realpath(default_path)
    return ModelChoice(label + (DEMO_LABEL if demo else ""), str(folder), bundled, is_default, demo)


def bundled_models(registry_path: str | os.PathLike) -> list[ModelChoice]:
    """Bundled registry entries whose package folder is present."""
    default = default_model_path(registry_path)
    choices = [_choice(e["package"], True, default) for e in bundled_entries(registry_path)]
    return [c for c in choices if c is not None]


def cached_models(models_dir: str | os.PathLike | None = None) -> list[ModelChoice]:
    """Packages in the per-user cache (``$BRAINAGE_CACHE/models``)."""
    root = Path(models_dir) if models_dir else cache_dir() / "models"
    if not root.is_dir():
        return []
    choices = [_choice(str(folder), False, None) for folder in sorted(root.iterdir())]
    return [c for c in choices if c is not None]


def available_models(registry_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> list[ModelChoice]:
    """Bundled models, then an outside default model ($BRAINAGE_DEFAULT_MODEL), then cached ones; each folder once."""
    seen, result = set(), []
    default = default_model_path(registry_path)
    outside = [_choice(str(default), False, default)] if default is not None else []
    for choice in bundled_models(registry_path) + [c for c in outside if c] + cached_models(models_dir):
        key = os.path.realpath(choice.path)
        if key not in seen:
            seen.add(key)
            result.append(choice)
    return result


def preselected_model(choices: list[ModelChoice]) -> ModelChoice | None:
    """The model to select when none is chosen: the bundled default, else the only non-demo model."""
    defaults = [c for c in choices if c.default]
    if defaults:
        return defaults[0]
    real = [c for c in choices if not c.synthetic_demo]
    return real[0] if len(real) == 1 else None
