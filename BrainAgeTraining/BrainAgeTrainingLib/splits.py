"""Cross-validation splits **by subject** (80/10/10 train/validation/test with 5 folds).

Subjects (never scans) are dealt into ``2 x n_folds`` groups of equal size; fold
``i`` tests on group ``2i``, validates on group ``2i + 1`` and trains on the rest,
so with 5 folds each fold is 80/10/10 and across the folds every subject is in
exactly one test and one validation group. With ``stratify_by_age`` subjects are
dealt in age order (random order inside each block of ``2 x n_folds``), so every
group spans the whole age range. All synthetic scans of a subject (every slicing
offset, every session) follow the subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FoldSplit:
    fold: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def role(self, subject: str) -> str | None:
        for name in ("train", "val", "test"):
            if subject in getattr(self, name):
                return name
        return None


def assign_groups(subjects: dict[str, float], n_groups: int, seed: int, stratify: bool = True) -> dict[str, int]:
    """Subject -> group index in 0..n_groups-1 (sizes differ by at most one)."""
    names = sorted(subjects)
    rng = np.random.default_rng([seed, 7919])
    order = rng.permutation(len(names))
    names = [names[i] for i in order]
    if stratify:
        names = sorted(names, key=lambda s: subjects[s])  # stable: ties keep the random order
    groups: dict[str, int] = {}
    for start in range(0, len(names), n_groups):
        block = names[start:start + n_groups]
        slots = rng.permutation(n_groups)[: len(block)]
        for name, slot in zip(block, slots):
            groups[name] = int(slot)
    return groups


def make_splits(subjects: dict[str, float], n_folds: int = 5, seed: int = 0, stratify: bool = True) -> list[FoldSplit]:
    """``n_folds`` train/val/test splits of subjects (``subjects``: id -> age used for stratification)."""
    if len(subjects) < 2 * n_folds:
        raise ValueError(
            f"{len(subjects)} subjects are too few for {n_folds}-fold cross-validation with separate validation and "
            f"test subjects (need at least {2 * n_folds}); add data or lower n_folds"
        )
    groups = assign_groups(subjects, 2 * n_folds, seed, stratify)
    splits = []
    for fold in range(n_folds):
        test = tuple(sorted(s for s, g in groups.items() if g == 2 * fold))
        val = tuple(sorted(s for s, g in groups.items() if g == 2 * fold + 1))
        train = tuple(sorted(s for s, g in groups.items() if g not in (2 * fold, 2 * fold + 1)))
        splits.append(FoldSplit(fold, train, val, test))
    return splits


def check_no_leakage(split: FoldSplit) -> None:
    """Raise if any subject is in two roles of one fold."""
    a, b, c = set(split.train), set(split.val), set(split.test)
    overlap = (a & b) | (a & c) | (b & c)
    if overlap:
        raise AssertionError(f"fold {split.fold}: subjects in more than one split: {sorted(overlap)[:5]}")
