"""Chronological age from DICOM attributes (PatientAge, or birth and study dates)."""

from __future__ import annotations

import datetime as _dt
import re

_UNITS_PER_YEAR = {"Y": 1.0, "M": 12.0, "W": 365.25 / 7.0, "D": 365.25}


def parse_patient_age(value: str | None) -> float | None:
    """DICOM PatientAge (0010,1010), e.g. ``064Y``, ``006M``, ``010W``, ``003D`` -> years; None if absent or malformed."""
    if not value:
        return None
    match = re.fullmatch(r"\s*(\d{1,3})\s*([YMWD])\s*", str(value).upper())
    if not match:
        return None
    return int(match.group(1)) / _UNITS_PER_YEAR[match.group(2)]


def _date(value: str | None) -> _dt.date | None:
    if not value:
        return None
    try:
        return _dt.datetime.strptime(str(value).strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def age_from_dates(birth_date: str | None, scan_date: str | None) -> float | None:
    """Age in years between PatientBirthDate (0010,0030) and StudyDate/AcquisitionDate (YYYYMMDD)."""
    birth, scan = _date(birth_date), _date(scan_date)
    if birth is None or scan is None or scan < birth:
        return None
    return (scan - birth).days / 365.25


def dicom_age(patient_age: str | None = None, birth_date: str | None = None, scan_date: str | None = None) -> float | None:
    """Best available age: exact from dates when both are present, else PatientAge."""
    from_dates = age_from_dates(birth_date, scan_date)
    return from_dates if from_dates is not None else parse_patient_age(patient_age)
