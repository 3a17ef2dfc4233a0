"""Reading results back from a run's ``log.txt``, the printed record upstream Dassl and the official code write.

Used for output trees without ``metrics.json`` (the official code's, older runs): the evaluator's
``=> result`` block, its ``* class:`` lines, the ``Evaluate on the *<split>* set`` line before it and the
config the run printed at its start. Log values carry the log's rounding (2 decimals, or 1 in official logs).
A log that cannot be read, or holds something else where a number belongs, is a ``FileError`` naming the
file and the line (docs/reliability.md).
"""

from __future__ import annotations

import re

from dassl.user_files import FileError, read_bytes

END_SIGNAL = "=> result"
PER_CLASS_LINE = re.compile(r"^\* class: (\d+) \((.*)\)\ttotal: ([\d,]+)\tcorrect: ([\d,]+)\tacc: ([\.\deE+-]+)%$")
SPLIT_LINE = re.compile(r"Evaluate on the \*(\w+)\* set")
CONFIG_LINE = re.compile(r"^( *)([A-Z][A-Z0-9_]*):(?: (.*))?$")
LOG_FIX = "the log was cut or edited: rerun the run's command (it continues where it stopped), or delete the log"


def log_lines(fpath: str) -> list[str]:
    """The lines of a log; undecodable bytes (a crash can leave NULs at the end) become U+FFFD."""
    return read_bytes(fpath, LOG_FIX).decode("utf-8", errors="replace").splitlines()


def log_number(text: str, fpath: str, line: int) -> float:
    """A number printed in a log; anything else names the log and the line."""
    try:
        return float(text)
    except ValueError:
        raise FileError(fpath, f"line {line} has {text!r} where a number belongs", LOG_FIX, line=line) from None


def parse_log(fpath: str, keyword: str) -> float | None:
    """The last ``* keyword: x%`` value after a ``=> result`` line, or None if the log has none.

    A log holding validation blocks and then the final test therefore gives the final test.
    """
    pattern = re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")
    started, value = False, None
    for number, line in enumerate(log_lines(fpath), start=1):
        line = line.strip()
        if line == END_SIGNAL:
            started = True
        match = pattern.search(line)
        if match and started:
            value = log_number(match.group(1), fpath, number)
    return value


def parse_per_class(fpath: str) -> list[dict]:
    """The ``* class:`` lines of the last ``=> result`` block: label, classname, total, correct, acc."""
    rows: list[dict] = []
    for number, line in enumerate(log_lines(fpath), start=1):
        if line.strip() == END_SIGNAL:
            rows = []
            continue
        match = PER_CLASS_LINE.match(line.strip(" "))
        if match:
            label, name, total, correct, acc = match.groups()
            rows.append(
                {
                    "label": int(label),
                    "classname": name,
                    "total": int(total.replace(",", "")),
                    "correct": int(correct.replace(",", "")),
                    "acc": log_number(acc, fpath, number),
                }
            )
    return rows


def last_evaluated_split(fpath: str) -> str | None:
    """The split of the log's last ``Evaluate on the *<split>* set`` line (``test`` / ``val``), or None."""
    split = None
    for line in log_lines(fpath):
        match = SPLIT_LINE.search(line)
        if match:
            split = match.group(1)
    return split


def parse_logged_config(fpath: str, keys: list[str]) -> dict[str, str]:
    """Values of dotted config keys (``TASK``, ``DATASET.SUBSAMPLE_CLASSES``) from the config a log printed.

    Dassl prints the resolved config (yacs' indented form) at the start of every run; the first
    value found for a key is returned, as text. Keys that are absent are left out.
    """
    wanted, found = set(keys), {}
    stack: list[tuple[int, str]] = []
    for line in log_lines(fpath):
        match = CONFIG_LINE.match(line)
        if not match:
            continue
        indent, key, value = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        if value is None:
            stack.append((indent, key))
        elif dotted in wanted and dotted not in found:
            found[dotted] = value.strip()
            if len(found) == len(wanted):
                break
    return found
