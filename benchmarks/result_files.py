"""The text files a benchmark leaves beside its CSVs: the summary table and the command line that made it."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def write_summary(out: Path, text: str, markdown: str = "summary.md", command: str = "command.json") -> None:
    """Write ``text`` to ``out/markdown`` and this process's command line to ``out/command``; print ``text``."""
    (out / markdown).write_text(text + "\n")
    (out / command).write_text(json.dumps({"argv": sys.argv}, indent=1))
    print(text)
