"""``python -m demo``: see demo/run.py (``bash demo.sh`` runs this from the repository root)."""

from .run import main

if __name__ == "__main__":
    main()
