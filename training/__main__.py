"""`python -m training ...` and `python -m training evaluate DIR`; see training/pipeline.py."""

import sys

from training.pipeline import main

sys.exit(main())
