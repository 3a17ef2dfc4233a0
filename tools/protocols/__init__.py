"""The evaluation protocols (base-to-novel, cross-dataset, few-shot): one home for their layout and run plan.

- ``layout``: the datasets of each protocol and the run-folder layout (built and parsed back);
- ``settings``: each method's published settings (``configs/trainers/<TRAINER>/protocols.yaml``);
- ``plan``: every train.py command line of a protocol, in the official order;
- ``results`` / ``status``: what a run folder holds (its result; running, finished, incomplete, not started);
- ``runner``: the cells run one after another, as ``base_to_novel.sh`` & co. do (``python -m tools.protocols``);
- ``ablation``: a method's declared ablations, one base-to-novel plan per value (``ablation.sh``).

The shell scripts, ``tools.grid`` and ``tools.report`` all go through this package.
"""

from .layout import DATASETS, DG_TARGETS, PROTOCOLS, SOURCE, TRANSFER_TARGETS, default_datasets, parse_run_dir
from .plan import Cell, plan
from .settings import ProtocolError, Setting, display_name, methods_with_protocols, setting
from .status import FINISHED, INCOMPLETE, NOT_STARTED, RUNNING, cell_status

__all__ = [
    "DATASETS", "DG_TARGETS", "FINISHED", "INCOMPLETE", "NOT_STARTED", "PROTOCOLS", "RUNNING", "SOURCE",
    "TRANSFER_TARGETS",
    "Cell", "ProtocolError", "Setting", "cell_status", "default_datasets", "display_name", "methods_with_protocols",
    "parse_run_dir", "plan", "setting",
]  # fmt: skip
