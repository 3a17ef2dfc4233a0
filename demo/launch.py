"""``train.py`` with the demo dataset registered: ``python -m demo.launch <train.py arguments>``.

train.py only knows the datasets of ``datasets/``; importing ``demo.dataset`` first adds
``DemoShapes`` to the registry, then the official command line runs unchanged.
"""

import train

from . import dataset  # noqa: F401  (registers DemoShapes)

if __name__ == "__main__":
    train.cli()
