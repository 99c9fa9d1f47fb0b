#!/usr/bin/env python
"""Train (once) and print the cached synthetic demo model: ``PythonSlicer train_demo_model.py [CACHE_DIR]``.

The model is trained on SYNTHETIC data and is not for clinical use.
"""

import sys

if __name__ == "__main__":
    from BrainAgeTrainingLib.demo_model import ensure_demo_model

    print(ensure_demo_model(sys.argv[1] if len(sys.argv) > 1 else None))
