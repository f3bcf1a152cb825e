"""`python -m training ...` and `python -m training evaluate DIR`; see training/cli.py."""

import sys

from training.cli import main

sys.exit(main())
