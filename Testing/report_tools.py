"""Helpers of the report tests: a tiny model package, headless Chromium and poppler (skipped when missing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from BrainAgeLib.model import ARCHITECTURE, DEFAULT_CONFIG, build_model
from BrainAgeLib.package import ModelCard, save_package

TINY = {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def tiny_package(path: Path, **card_fields) -> Path:
    """A 2-fold package of untrained tiny networks whose outputs sit in an adult age range."""
    models = []
    for seed in (0, 1):
        model = build_model(TINY, seed=seed)
        with torch.no_grad():
            model.class_layers.out.weight.mul_(10.0)
            model.class_layers.out.bias.fill_(55.0 + seed)
        models.append(model.eval())
    card = ModelCard(name="tiny-test", version="0.1", skull_strip={"backend": "none"},
                     architecture={"name": ARCHITECTURE, "config": {**DEFAULT_CONFIG, **TINY}}, **card_fields)
    return save_package(path, models, card)


def tool(*names: str) -> str:
    """Path of the first installed program of ``names``, or skip the test saying how to install it."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{names[0]} is not installed (Debian: apt-get install -y "
                f"{'chromium' if names[0] == 'chromium' else 'poppler-utils'})")


def chromium_screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 1800) -> Path:
    """Open ``html`` in headless Chromium (fresh profile, no network services) and screenshot it."""
    browser = tool("chromium", "chromium-browser", "google-chrome")
    profile = png.parent / "chromium-profile"
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                    f"--screenshot={png}", Path(html).resolve().as_uri()], capture_output=True, timeout=180, check=False)
    assert png.is_file(), "Chromium wrote no screenshot"
    return png
