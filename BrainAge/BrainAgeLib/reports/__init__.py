"""Reports for people: the one-page case report of a scan (used by ``brainage predict --report`` and the panel)."""

from .case_page import write_case_report

__all__ = ["write_case_report"]
