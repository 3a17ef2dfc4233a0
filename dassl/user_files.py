"""Reading the files a user hands us (configs, splits, class names, logs, results, weights) through one checked path.

Every reader here raises :class:`FileError` for a file that is missing, unreadable, not text, truncated
or malformed: one message ``<file>[:<line>]: <what is wrong>: <what to do>`` that train.py, the report and
the scripts print as a single ``error:`` line. The schema of each kind of file is checked where that
kind is read (split files in ``datasets.utils``, checkpoints in ``dassl.utils.torchtools``, ...), with
:func:`schema_error` for a uniform message; docs/reliability.md lists every check and its message.

Only the standard library and PyYAML are imported, so shell helpers read YAML through this module
without loading torch.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

from dassl.errors import UserError

__all__ = [
    "FileError",
    "check_torch_file",
    "describe",
    "read_bytes",
    "read_json",
    "read_text",
    "read_yaml",
    "schema_error",
    "yaml_key_lines",
]

READABLE = "make it readable (chmod a+r) or copy it somewhere readable"


class FileError(UserError):
    """A file that cannot be used as it is: names the file (and line), the problem and the fix."""

    def __init__(self, path: str, problem: str, fix: str, line: int | None = None, source: str = "") -> None:
        self.path, self.problem, self.fix, self.line = path, problem, fix, line
        where = (f"{path}:{line}" if line else path) + (f" ({source})" if source else "")
        super().__init__(f"{where}: {problem}: {fix}")


def describe(obj: Any) -> str:
    """A few words on what a file held instead of what was expected (for schema messages)."""
    if isinstance(obj, dict):
        keys = sorted(map(str, obj))
        return f"a mapping with keys {keys[:6]}{' ...' if len(keys) > 6 else ''}" if keys else "an empty mapping"
    if isinstance(obj, (list, tuple)):
        return f"a list of {len(obj)} item{'' if len(obj) == 1 else 's'}"
    if obj is None:
        return "nothing"
    return f"a {type(obj).__name__} ({str(obj)[:40]!r})"


def schema_error(path: str, expected: str, found: str, fix: str, line: int | None = None) -> FileError:
    """The error for a file that parses but does not hold what it should (``found``: what is wrong in it)."""
    return FileError(path, f"not {expected} ({found})", fix, line)


def _open_error(path: str, e: OSError, fix: str, source: str = "") -> FileError:
    if isinstance(e, FileNotFoundError):
        return FileError(path, "no such file", fix, source=source)
    if isinstance(e, IsADirectoryError):
        return FileError(path, "is a folder, not a file", fix, source=source)
    if isinstance(e, PermissionError):
        return FileError(path, "cannot be read (permission denied)", READABLE, source=source)
    return FileError(path, f"cannot be read ({e.strerror or e})", fix, source=source)


def read_bytes(path: str, fix: str) -> bytes:
    """The file's bytes; a missing, unreadable or folder path is a FileError with ``fix``."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _open_error(path, e, fix) from None


def read_text(path: str, fix: str) -> str:
    """The file as UTF-8 text (a BOM is dropped); bytes that are not UTF-8 make it "not a text file"."""
    data = read_bytes(path, fix)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise FileError(path, f"not a text file (byte {data[e.start]:#04x} on line {line} is not UTF-8)", fix) from None


def read_json(path: str, fix: str) -> Any:
    """Parsed JSON; an empty, truncated or otherwise invalid file names the line where parsing stopped."""
    text = read_text(path, fix)
    if not text.strip():
        raise FileError(path, "is empty", fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated")
        where = "it ends early (truncated?)" if cut else f"line {e.lineno}, column {e.colno}"
        raise FileError(path, f"not valid JSON ({e.msg}; {where})", fix, line=e.lineno) from None


def read_yaml(path: str, fix: str = "") -> Any:
    """Parsed YAML (safe loader); a syntax error names the line and asks to fix it (``fix`` for other faults)."""
    import yaml

    fix = fix or "restore it from the repository (git checkout -- FILE)"
    text = read_text(path, fix)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None) or ""
        mark = getattr(e, "problem_mark", None)
        opened = any(w in context for w in ("flow", "quoted", "simple key")) or "<stream end>" in problem
        if mark is None or opened:  # an unclosed bracket or quote, a key without ':': where it starts
            mark = getattr(e, "context_mark", None) or mark
        if mark is None:
            raise FileError(path, f"YAML syntax error ({problem})", "fix the file") from None
        line = mark.line + 1
        raise FileError(path, f"YAML syntax error ({problem})", f"fix line {line}", line=line) from None


def yaml_key_lines(path: str) -> dict[str, int]:
    """Line of every key of a (valid) YAML mapping, by dotted path (``OPTIM.MAX_EPOCH``); {} if unreadable."""
    import yaml

    try:
        with open(path, encoding="utf-8-sig") as f:
            root = yaml.compose(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            dotted = f"{prefix}{key.value}"
            lines[dotted] = key.start_mark.line + 1
            walk(value, dotted + ".")

    walk(root, "")
    return lines


ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80  # torch's legacy (pre-1.6) format starts with a pickle protocol opcode


def check_torch_file(path: str, fix: str, source: str = "") -> None:
    """Cheap check that ``path`` can be a ``torch.save`` file (or an OpenAI TorchScript archive).

    Reads the first bytes and, for the zip format, the archive's directory at its end: a missing,
    empty, truncated or foreign file fails here in milliseconds, before data and models are built.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise _open_error(path, e, fix, source) from None
    if not head:
        raise FileError(path, "is empty", fix, source=source)
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise FileError(path, f"truncated or corrupt ({e})", fix, source=source) from None
        return
    if head[0] != PICKLE_PROTO:
        raise FileError(path, f"not a PyTorch file (it starts with {head!r})", fix, source=source)
    if os.path.getsize(path) < 64:
        raise FileError(path, "truncated or corrupt (only a few bytes)", fix, source=source)
