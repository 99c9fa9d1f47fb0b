"""Reading the predictions and participants tables and joining them into one frame of named roles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from BrainAgeLib.inputs import case_key

from .columns import DEFAULTS, pick
from .errors import EvaluationError

#: The working frame's columns (one row per scan); optional roles are filled with NaN when absent.
ROLES = ("subject", "age", "predicted_age", "group", "site", "sex", "score", "acquisition")
PATH_COLUMNS = ("source", "path", "file")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV or TSV (by suffix; ``.tsv``/``.txt`` are tab separated)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: no such file")
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        return pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read as a {'TSV' if sep == chr(9) else 'CSV'} table ({exc})") from exc


def _ids_from_paths(paths: pd.Series, ids: set[str]) -> pd.Series:
    """The participant id found in each path: a folder name, the file name, or one of its ``_`` parts."""
    def find(path) -> str | None:
        if not isinstance(path, str):
            return None
        stem = case_key(path)
        tokens = [*Path(path).parts, stem, *stem.split("_")]
        return next((t for t in reversed(tokens) if t in ids), None)
    return paths.map(find)


def _exact_or_within(values: pd.Series, ids: set[str]) -> pd.Series:
    """Each value if it is an id, else the id found inside it as a path part (``dataset/sub-01``)."""
    text = values.astype(str)
    return text.where(text.isin(ids), _ids_from_paths(text, ids))


def join_participants(predictions: pd.DataFrame, participants: pd.DataFrame,
                      id_column: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Predictions with the participants' columns added (a column in both keeps the predictions' values; the
    participants' copy becomes ``NAME_participants``), and warnings about predictions that match nobody."""
    key = pick(participants, "id", id_column, "the participants table")
    if key is None:
        raise EvaluationError("the participants table has no participant column: looked for "
                              f"{', '.join(DEFAULTS['id'])}; name it with --id-column")
    if participants[key].duplicated().any():
        dup = participants.loc[participants[key].duplicated(), key].iloc[0]
        raise EvaluationError(f"the participants table lists {key} {dup!r} more than once")
    ids = set(participants[key].astype(str))
    found = None
    if key in predictions.columns:
        match = _exact_or_within(predictions[key], ids)
    elif (found := next((c for c in DEFAULTS["id"] if c in predictions.columns), None)) is not None:
        match = _exact_or_within(predictions[found], ids)
    elif (found := next((c for c in PATH_COLUMNS if c in predictions.columns), None)) is not None:
        match = _ids_from_paths(predictions[found], ids)
    else:
        raise EvaluationError(f"the predictions have no {key!r} column and no file path ({', '.join(PATH_COLUMNS)}) "
                              "to find it in; add the participant id to the predictions")
    matched = match.isin(ids)
    if not matched.any():
        example = predictions.iloc[0].get(found or key, "?") if len(predictions) else "?"
        raise EvaluationError(f"no prediction matches a {key} of the participants table (e.g. {example!r} vs "
                              f"{sorted(ids)[:3]}); check --id-column and the file names")
    warnings = [f"{(~matched).sum()} of {len(predictions)} predictions match no participant and are left out"] \
        if not matched.all() else []
    right = participants.assign(**{key: participants[key].astype(str)})
    right = right.rename(columns={c: f"{c}_participants" for c in right.columns if c in predictions.columns and c != key})
    joined = predictions.loc[matched].drop(columns=[key], errors="ignore").assign(**{key: match[matched]})
    return joined.merge(right, on=key, how="left"), warnings


def working_frame(frame: pd.DataFrame, columns: dict[str, str | None], controls: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per usable scan with the columns :data:`ROLES` plus ``is_control``, ``row`` (index into
    ``frame``), and warnings about rows left out. Without a group column every scan is a control."""
    warnings: list[str] = []
    out = pd.DataFrame({"row": np.arange(len(frame))})
    for role in ROLES:
        source = columns.get("id" if role == "subject" else "predicted" if role == "predicted_age" else role)
        out[role] = frame[source].to_numpy() if source else np.nan
    if columns.get("id") is None:
        out["subject"] = [f"row-{i + 1}" for i in range(len(out))]
    out["subject"] = out["subject"].astype(str)
    for role in ("age", "predicted_age", "score"):
        out[role] = pd.to_numeric(out[role], errors="coerce")
    keep = out["age"].notna() & out["predicted_age"].notna()
    if "error" in frame.columns:
        keep &= frame["error"].isna().to_numpy() | (frame["error"].astype(str).str.strip() == "")
    if (~keep).any():
        warnings.append(f"{(~keep).sum()} of {len(out)} rows have no age, no prediction or a recorded error "
                        "and are left out")
    out = out[keep].reset_index(drop=True)
    if columns.get("group") is None:
        out["group"] = controls
        warnings.append(f"no group column: every scan is treated as a control ({controls!r})")
    out["group"] = out["group"].astype(str)
    out["is_control"] = out["group"] == controls
    if not out["is_control"].any():
        raise EvaluationError(f"no scan belongs to the control group {controls!r} (column {columns['group']!r} holds "
                              f"{', '.join(sorted(out['group'].unique()))}); name the controls with --controls")
    return out, warnings
