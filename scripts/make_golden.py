"""Write the golden-results table of a shipped model: ages for fixed inputs made from the real sample heads.

    .venv/bin/python scripts/make_golden.py [--model PACKAGE]   # default: the bundled default model

Writes Testing/golden/<name>-<version>.csv, checked by Testing/test_golden.py. Re-run it only when a
change is meant to move the ages, and say why in the commit.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "BrainAge")]

from BrainAgeLib.bundled_models import default_model_path  # noqa: E402
from BrainAgeLib.golden_inputs import GOLDEN_INPUTS, golden_input  # noqa: E402
from BrainAgeLib.predict import Predictor  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)
    model = args.model or default_model_path()
    rows = []
    for name, (description, backends) in GOLDEN_INPUTS.items():
        volume = golden_input(name)
        for backend in backends:
            predictor = Predictor(model, skull_strip=backend, device="cpu", precision="fp32")
            result = predictor.predict_volume(volume)
            if result.error:
                raise SystemExit(f"{name} / {backend}: {result.error}")
            rows.append({"input": name, "skull_strip": backend, "predicted_age": f"{result.predicted_age:.4f}",
                         "fold_ages": ";".join(f"{a:.4f}" for a in result.fold_ages), "description": description})
            print(f"{name:26s} {backend:8s} {result.predicted_age:8.3f} y  folds {rows[-1]['fold_ages']}")
    card = predictor.package.card
    out = ROOT / "Testing" / "golden" / f"{card.name}-{card.version}.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
