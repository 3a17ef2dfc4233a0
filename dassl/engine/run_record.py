"""The run's record beside ``log.txt``: its resolved config and class names.

With them a run folder rebuilds its model without the dataset (``tools.predict``, ``tools.inspect``):
``config.yaml`` is the config as trained (``cfg.dump()``, what ``metrics.json``'s ``config_sha256``
hashes) and ``classnames.txt`` the class names in label order, one per line (the format
``tools.predict --classnames`` reads). Both are replaced atomically.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

from yacs.config import CfgNode

from dassl.user_files import read_text
from dassl.utils import atomic_write

CONFIG_FILE = "config.yaml"
CLASSNAMES_FILE = "classnames.txt"


def write_run_record(output_dir: str, cfg: CfgNode, classnames: Sequence[str]) -> None:
    """Write ``config.yaml`` and ``classnames.txt`` into ``output_dir``."""
    with atomic_write(osp.join(output_dir, CONFIG_FILE)) as f:
        f.write(cfg.dump())
    with atomic_write(osp.join(output_dir, CLASSNAMES_FILE)) as f:
        f.writelines(f"{name}\n" for name in classnames)


def read_classnames(path: str) -> list[str]:
    """Class names, one per line (surrounding spaces and blank lines ignored); a FileError if unreadable."""
    text = read_text(path, "write one class name per line, in label order (train.py writes it beside log.txt)")
    return [line.strip() for line in text.splitlines() if line.strip()]
