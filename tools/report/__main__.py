"""``python -m tools.report OUTPUT_DIR``: see the package docstring."""

from . import main

main()
