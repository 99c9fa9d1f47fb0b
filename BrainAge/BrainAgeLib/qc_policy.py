"""Which quality findings stop a scan from getting an age, and which are only warnings: one table.

Every QC flag the pipeline writes starts with its code (``"background: 99.4% of ..."``); the
severity of a flag is read from :data:`QC_RULES` by that code, nowhere else. A scan with a hard
failure gets no age unless the caller opts in (``--keep-failed-qc``, ``keep_failed_qc=True``);
then its ages are returned but marked. The README's QC table is :func:`markdown_table`.
"""

from __future__ import annotations

from dataclasses import dataclass

FAIL, WARN = "fail", "warn"
#: What the error of a refused scan starts with.
FAILED_QC = "failed QC"
#: The mark on the ages of a failed scan kept on request.
KEPT_MARK = "failed QC, ages kept on request: not a valid result"


@dataclass(frozen=True)
class QCRule:
    code: str
    severity: str  # FAIL: no age by default; WARN: age given, flag shown
    meaning: str  # one line for the documentation


QC_RULES = {rule.code: rule for rule in (
    QCRule("field-of-view", FAIL, "the scan's extent is under 110 x 130 x 80 mm: it cannot hold a whole adult brain "
                                  "(refused when the scan is read, before any processing)"),
    QCRule("background", FAIL, "more than 92 % of the 80 x 120 x 40 model input is background: part of the brain is "
                               "missing or skull stripping failed (the method's exclusion rule)"),
    QCRule("mask-empty", FAIL, "the skull strip found no brain"),
    QCRule("mask-tiny", FAIL, "the brain mask holds under 400 mL: far less than any adult brain"),
    QCRule("mask-volume", WARN, "the brain mask volume is outside 700-2000 mL (skull left in, or brain cut off)"),
    QCRule("mask-edge", WARN, "the brain mask touches more than one face of the field of view"),
    QCRule("skull-residue", WARN, "skull strip 'none' was chosen but the image still holds skull and scalp"),
    QCRule("skull-strip-mismatch", WARN, "the model was trained on scans skull stripped by another backend"),
    QCRule("backend-option", WARN, "a skull-strip option the backend cannot honour was ignored"),
    QCRule("saliency", WARN, "the saliency map's share inside the brain, or why it could not be made"),
    QCRule("report", WARN, "the case report could not be written"),
)}


def qc_flag(code: str, text: str) -> str:
    """A flag as the pipeline writes it: its code, a colon, the sentence a user reads."""
    if code not in QC_RULES:
        raise KeyError(f"unknown QC code {code!r}; add it to QC_RULES")
    return f"{code}: {text}"


def flag_code(flag: str) -> str | None:
    code = flag.split(":", 1)[0].strip()
    return code if code in QC_RULES else None


def hard_failures(flags) -> list[str]:
    """The flags whose rule is a hard failure (an uncoded flag is a warning)."""
    return [f for f in flags if (code := flag_code(f)) and QC_RULES[code].severity == FAIL]


def failed_qc_error(failures) -> str:
    return f"{FAILED_QC}: " + " | ".join(failures)


def qc_status(passed: bool, flags) -> str:
    """One word or three for a result's QC: passed, passed with warnings, FAILED."""
    return "FAILED" if not passed else ("passed with warnings" if flags else "passed")


def markdown_table() -> str:
    """The QC table of the README and docs/cli.md."""
    lines = ["| flag | severity | meaning |", "|---|---|---|"]
    for rule in QC_RULES.values():
        severity = "hard failure: no age" if rule.severity == FAIL else "warning"
        lines.append(f"| `{rule.code}` | {severity} | {rule.meaning} |")
    return "\n".join(lines)
