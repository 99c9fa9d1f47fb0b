"""``python -m BrainAgeLib.cli``: the ``brainage`` command."""

import sys

from . import main

sys.exit(main())
