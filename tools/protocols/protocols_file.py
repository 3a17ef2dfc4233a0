"""Reading a method's ``configs/trainers/<TRAINER>/protocols.yaml``, checked (PyYAML only, no torch).

A syntax error names the line; a key or value of the wrong shape names the key, its line and what it
takes, instead of an AttributeError deep inside the plan or the grid.
"""

from __future__ import annotations

from typing import Any

from dassl.user_files import FileError, describe, read_yaml, yaml_key_lines

from .layout import PROTOCOLS

__all__ = ["FileError", "read_protocols"]

FIX = "fix it as configs/trainers/CoOp/protocols.yaml shows"


def _is_config(value: Any) -> bool:
    """A config file stem, or {shots: stem} (few-shot settings by number of shots)."""
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, int) and isinstance(v, str) and v for k, v in value.items()
    )


def _problem(data: dict) -> tuple[str, str] | None:
    """(dotted key, what is wrong) for the first entry of the wrong shape, or None."""
    for key in data:
        if key not in (*PROTOCOLS, "name", "eval_only", "backbones"):
            return str(key), f"unknown key '{key}' (keys: name, eval_only, {', '.join(PROTOCOLS)}, backbones)"
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
        key, what = problem
        raise FileError(path, what, FIX, line=yaml_key_lines(path).get(key))
    return data
