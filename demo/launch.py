"""The project's commands with the demo dataset registered.

    python -m demo.launch <train.py arguments>
    python -m demo.launch -m tools.predict <arguments>     # or tools.inspect, tools.report, ...

train.py and the tools only know the datasets of ``datasets/``; importing ``demo.dataset`` first adds
``DemoShapes`` to the registry, then the command runs unchanged on the demo's runs.
"""

import runpy
import sys

from . import dataset  # noqa: F401  (registers DemoShapes)

if __name__ == "__main__":
    if sys.argv[1:2] == ["-m"] and len(sys.argv) > 2:
        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        import train

        train.cli()
