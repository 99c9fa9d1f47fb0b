"""Models shipped inside the extension (listed in ``Resources/Models.json`` with a ``path``), and the
default model used when none is named. Reads JSON only: safe to import before torch is installed.

A bundled entry::

    {"name": ..., "version": ..., "path": "Models/<folder>", "bundled": true, "default": true, "description": ...}

``path`` is relative to the folder of ``Models.json``. ``$BRAINAGE_DEFAULT_MODEL`` names another
package folder as the default (e.g. a site's own model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REGISTRY = Path(__file__).resolve().parents[1] / "Resources" / "Models.json"


def bundled_entries(registry: str | os.PathLike = REGISTRY) -> list[dict]:
    """Bundled entries whose package folder exists, each with an absolute ``package`` path."""
    registry = Path(registry)
    try:
        items = json.loads(registry.read_text()).get("models", [])
    except (OSError, ValueError):
        return []
    out = []
    for item in items:
        if not item.get("bundled") or not item.get("path"):
            continue
        package = (registry.parent / item["path"]).resolve()
        if (package / "model_card.json").is_file():
            out.append({**item, "package": str(package)})
    return out


def default_model_path(registry: str | os.PathLike = REGISTRY) -> Path | None:
    """``$BRAINAGE_DEFAULT_MODEL``, else the bundled entry marked ``default`` (else the first bundled), else None."""
    override = os.environ.get("BRAINAGE_DEFAULT_MODEL")
    if override:
        return Path(override)
    entries = bundled_entries(registry)
    chosen = next((e for e in entries if e.get("default")), entries[0] if entries else None)
    return Path(chosen["package"]) if chosen else None
