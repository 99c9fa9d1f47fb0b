"""Which column holds what: explicit names are checked, defaults are looked up among common names."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd

from .errors import EvaluationError

#: Column names tried, in order, for a role the user did not name.
DEFAULTS = {
    "id": ("participant_id", "subject", "subject_id"),
    "age": ("age", "chronological_age"),
    "predicted": ("predicted_age",),
    "group": ("cohort", "group", "diagnosis", "dx"),
    "site": ("site",),
    "sex": ("sex",),
    "score": ("mmse", "MMSE"),
    "acquisition": ("acquisition",),
}
#: Roles without which nothing can be evaluated.
REQUIRED = ("age", "predicted")
#: What each role means, for help texts.
MEANING = {"id": "participant id", "age": "chronological age", "predicted": "raw (uncorrected) predicted brain age",
           "group": "group / diagnosis", "site": "site", "sex": "sex", "score": "clinical score (e.g. MMSE)",
           "acquisition": "acquisition type"}
#: The option that names each role on the command line.
OPTIONS = {role: f"--{role}-column" for role in DEFAULTS}


@dataclass(frozen=True)
class Columns:
    """Column names by role; ``None`` means: use the first of :data:`DEFAULTS` present, if any."""

    id: str | None = None
    age: str | None = None
    predicted: str | None = None
    group: str | None = None
    site: str | None = None
    sex: str | None = None
    score: str | None = None
    acquisition: str | None = None

    def resolve(self, frame: pd.DataFrame, table: str = "the predictions") -> dict[str, str | None]:
        """Actual column per role; a named column that is absent, or a missing required role, raises."""
        out = {f.name: pick(frame, f.name, getattr(self, f.name), table) for f in fields(self)}
        for role in REQUIRED:
            if out[role] is None:
                raise EvaluationError(f"no {role} column in {table}: looked for {', '.join(DEFAULTS[role])} "
                                      f"(columns: {_listing(frame)}); name it with {OPTIONS[role]}")
        return out


def pick(frame: pd.DataFrame, role: str, name: str | None, table: str) -> str | None:
    """``name`` if ``frame`` has it (else raise), or the first default of ``role`` present, or None."""
    if name is None:
        return next((c for c in DEFAULTS[role] if c in frame.columns), None)
    if name not in frame.columns:
        raise EvaluationError(f"{OPTIONS[role]} {name!r}: no such column in {table} (columns: {_listing(frame)})")
    return name


def _listing(frame: pd.DataFrame) -> str:
    return ", ".join(map(str, frame.columns))
