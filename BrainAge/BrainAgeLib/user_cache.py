"""The per-user cache folder shared by models, the demo model and synthetic templates."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$BRAINAGE_CACHE``, else ``~/.cache/slicer-brainage``."""
    return Path(os.environ.get("BRAINAGE_CACHE") or Path.home() / ".cache" / "slicer-brainage")
