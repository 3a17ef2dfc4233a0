"""Entry point of ``python -m tools.parity`` (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
