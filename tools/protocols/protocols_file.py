"""Reading a method's ``configs/trainers/<TRAINER>/protocols.yaml``, checked (PyYAML only, no torch).

A syntax error names the line; a key or value of the wrong shape names the key, its line and what it
takes, instead of an AttributeError deep inside the plan or the grid.
"""

from __future__ import annotations

import re
from typing import Any

from dassl.user_files import FileError, describe, read_yaml, yaml_key_lines

from .layout import PROTOCOLS

__all__ = ["FileError", "read_protocols"]

FIX = "fix it as configs/trainers/CoOp/protocols.yaml shows"
ABLATION_FIX = "fix it as the ablations of configs/trainers/MMRL/protocols.yaml show"
ABLATION_KEYS = ("key", "values", "datasets", "seeds")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")  # a folder name: ablation names and value labels
CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Za-z0-9_]+)+")  # TRAINER.MMRL.REG_WEIGHT


def _is_config(value: Any) -> bool:
    """A config file stem, or {shots: stem} (few-shot settings by number of shots)."""
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, int) and isinstance(v, str) and v for k, v in value.items()
    )


def _is_scalar(value: Any) -> bool:
    """A value a config option can take on the command line: a number, a word, or a list of numbers."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return isinstance(value, (int, float, str)) and not isinstance(value, bool) and str(value).strip() != ""


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, kind) and not isinstance(v, bool) and v != "" for v in value
    )


def _ablation_problem(name: Any, entry: Any) -> tuple[str, str] | None:
    """(dotted key, what is wrong) for an ablation of the wrong shape (see tools/protocols/ablation.py)."""
    at = f"ablations.{name}"
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return at, f"ablation name {name!r} must be a word of letters, digits and _ (a folder name)"
    if not isinstance(entry, dict):
        return at, f"{at} is {describe(entry)}, expected a mapping with 'key' and 'values'"
    unknown = sorted(set(entry) - set(ABLATION_KEYS))
    if unknown:
        return f"{at}.{unknown[0]}", f"{at} has unknown key '{unknown[0]}' (keys: {', '.join(ABLATION_KEYS)})"
    if not isinstance(entry.get("key"), str) or not CONFIG_KEY.fullmatch(entry["key"]):
        return f"{at}.key" if "key" in entry else at, (
            f"{at}.key is {describe(entry.get('key'))}, expected a config key such as TRAINER.MMRL.REG_WEIGHT")
    values = entry.get("values")
    listed = values if isinstance(values, list) else []
    labelled = values.items() if isinstance(values, dict) else [(v, v) for v in listed]
    if not isinstance(values, (list, dict)) or not values or not all(  # a label is a folder name
        isinstance(label, (int, float, str)) and NAME.fullmatch(str(label)) and _is_scalar(v) for label, v in labelled
    ):
        return f"{at}.values" if "values" in entry else at, (
            f"{at}.values is {describe(values)}, expected a list of values (numbers or words) or a mapping of "
            "folder names to values (a value may be a list of numbers)")
    if "datasets" in entry and not _is_list_of(entry["datasets"], str):
        return f"{at}.datasets", f"{at}.datasets is {describe(entry['datasets'])}, expected a list of dataset names"
    if "seeds" in entry and not _is_list_of(entry["seeds"], int):
        return f"{at}.seeds", f"{at}.seeds is {describe(entry['seeds'])}, expected a list of seeds (integers)"
    return None


def _problem(data: dict) -> tuple[str, str, str] | None:
    """(dotted key, what is wrong, the fix) for the first entry of the wrong shape, or None."""
    ablations = data.get("ablations", {})
    if not isinstance(ablations, dict):
        return "ablations", f"ablations is {describe(ablations)}, expected a mapping of names to settings", ABLATION_FIX
    for name, entry in ablations.items():
        problem = _ablation_problem(name, entry)
        if problem is not None:
            return (*problem, ABLATION_FIX)
    problem = _protocol_problem(data)
    return None if problem is None else (*problem, FIX)


def _protocol_problem(data: dict) -> tuple[str, str] | None:
    """(dotted key, what is wrong) for the first protocol entry of the wrong shape, or None."""
    for key in data:
        if key not in (*PROTOCOLS, "name", "eval_only", "backbones", "ablations"):
            keys = f"name, eval_only, {', '.join(PROTOCOLS)}, backbones, ablations"
            return str(key), f"unknown key '{key}' (keys: {keys})"
    if not isinstance(data.get("eval_only", False), bool):
        return "eval_only", f"eval_only is {describe(data['eval_only'])}, expected true or false"
    backbones = data.get("backbones", {})
    if not isinstance(backbones, dict) or not all(
        isinstance(t, dict) and t and all(isinstance(k, str) and isinstance(v, str) and v for k, v in t.items())
        for t in backbones.values()
    ):
        return "backbones", "backbones must map each backbone (e.g. rn50) to {published config: its config}"
    for protocol in PROTOCOLS:
        if protocol not in data:
            continue
        entry = data[protocol]
        if not isinstance(entry, dict):
            return protocol, f"{protocol} is {describe(entry)}, expected a mapping with 'config'"
        if not _is_config(entry.get("config")):
            return f"{protocol}.config" if "config" in entry else protocol, (
                f"{protocol}.config is {describe(entry.get('config'))}, expected a config name or {{shots: name}}")
        if "imagenet" in entry and not _is_config(entry["imagenet"]):
            what = f"{protocol}.imagenet is {describe(entry['imagenet'])}, expected a config name"
            return f"{protocol}.imagenet", what
        if not isinstance(entry.get("opts", []), list) or len(entry.get("opts", [])) % 2:
            return f"{protocol}.opts", f"{protocol}.opts must be a list of KEY, VALUE pairs"
        unknown = sorted(set(entry) - {"config", "imagenet", "opts"})
        if unknown:
            what = f"{protocol} has unknown key '{unknown[0]}' (keys: config, imagenet, opts)"
            return f"{protocol}.{unknown[0]}", what
    return None


def read_protocols(path: str) -> dict[str, Any]:
    """The settings in ``path`` (a mapping of protocol names to settings); FileError if it is not one."""
    data = read_yaml(path, FIX)
    if not isinstance(data, dict):
        raise FileError(path, f"not a mapping of protocol names to settings (it holds {describe(data)})", FIX)
    problem = _problem(data)
    if problem is not None:
        key, what, fix = problem
        raise FileError(path, what, fix, line=yaml_key_lines(path).get(key))
    return data
