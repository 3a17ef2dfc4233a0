"""Merging a YAML config file (dataset or trainer) into the config, with errors that name file and line.

yacs' ``merge_from_file`` would raise a bare KeyError / ValueError / YAML traceback, and it executes a
``.py`` config; here only YAML is read (through :mod:`dassl.user_files`), and an unknown key or a value
of the wrong type points at its line, with the closest known key when the name looks like a typo.
"""

from __future__ import annotations

import difflib
import os.path as osp
import re
from typing import Any

from yacs.config import CfgNode

from dassl.user_files import FileError, describe, read_yaml, schema_error, yaml_key_lines

__all__ = ["merge_config_file"]

FIX = "restore it from configs/ (git checkout -- FILE) or fix it"


def _flat_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        keys += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, CfgNode) else [f"{prefix}{k}"]
    return keys


def _value(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def merge_config_file(cfg: CfgNode, path: str, flag: str) -> None:
    """Merge the YAML file ``path`` (given as ``flag``) into ``cfg``; every fault is a FileError."""
    if not osp.isfile(path):
        raise FileError(path, f"no such file ({flag})", "the files are under configs/")
    if not path.endswith((".yaml", ".yml")):
        raise FileError(path, f"not a YAML file ({flag})", "give a .yaml file, e.g. one under configs/")
    data = read_yaml(path, FIX)
    if data is None:
        raise FileError(path, "is empty", FIX)
    if not isinstance(data, dict):
        raise schema_error(path, "a mapping of config keys", "it holds " + describe(data), FIX)
    try:
        cfg.merge_from_other_cfg(CfgNode(data))
    except (KeyError, ValueError, AssertionError) as e:
        raise _merge_error(cfg, path, data, e) from None


def _merge_error(cfg: CfgNode, path: str, data: dict, e: Exception) -> FileError:
    message = str(e.args[0]) if e.args else str(e)
    match = re.search(r"config key: (\S+)", message)
    key = match.group(1) if match else ""
    line = yaml_key_lines(path).get(key)
    if isinstance(e, KeyError) and key:
        close = difflib.get_close_matches(key, _flat_keys(cfg), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}?" if close else "remove it or check its spelling"
        return FileError(path, f"unknown config key {key}", hint, line)
    if isinstance(e, ValueError) and key:
        expected = _value(cfg, key)
        name = type(expected).__name__
        kind = "a section (KEY: value lines)" if isinstance(expected, CfgNode) else (
            f"{'an' if name[0] in 'aeiou' else 'a'} {name} like {expected!r}")
        return FileError(path, f"{key} takes {kind}, got {_value(data, key)!r}", f"fix line {line}" if line else FIX,
                         line)  # fmt: skip
    return FileError(path, f"cannot be merged into the config ({message})", FIX)
