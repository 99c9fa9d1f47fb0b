#!/usr/bin/env python
"""Subprocess entry point of BrainAgeTraining: ``PythonSlicer train.py --data ... --out RUN_DIR [...]``.

Same arguments as ``brainage train`` (this just calls it), so a run started from
Slicer and one started on a cluster are the same code path.
"""

import sys

if __name__ == "__main__":
    from BrainAgeLib.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
