"""Summarise test results over seeds: mean and std (or 95% CI) of a metric in ``log.txt`` files.

Layout read (upstream's): ``DIR/seed1/log.txt``, ``DIR/seed2/log.txt``, ...; with ``--multi-exp``
one level more, ``DIR/<experiment>/seed*/log.txt``, averaged over experiments at the end.
The value taken from a log is the LAST ``* <keyword>: x%`` line after a ``=> result`` line, so
a log holding validation blocks followed by the final test reports the final test.
The summary is printed and written to ``DIR/parse.txt``.

    python parse_test_res.py output/base2new/train_base/dtd/shots_16/MMRL/vit_b16
    python parse_test_res.py output/few_shot/dtd --multi-exp --ci95
"""
from __future__ import annotations

import argparse
import math
import os
import os.path as osp
import re
import sys
from collections import OrderedDict

from dassl.user_files import FileError, read_bytes
from dassl.utils.tools import UserError, atomic_write, listdir_nohidden

END_SIGNAL = "=> result"
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


def mean_std(values: list[float], ci95: bool = False) -> tuple[float, float]:
    """Mean and population std (NumPy's default, as upstream); with ``ci95`` the 95% half-width."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if ci95:
        std = 1.96 * std / math.sqrt(len(values))
    return mean, std


def parse_log(fpath: str, keyword: str) -> float | None:
    """The last ``* keyword: x%`` value after a ``=> result`` line, or None if the log has none."""
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


PER_CLASS_LINE = re.compile(
    r"^\* class: (\d+) \((.*)\)\ttotal: ([\d,]+)\tcorrect: ([\d,]+)\tacc: ([\.\deE+-]+)%$"
)


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
    pattern, split = re.compile(r"Evaluate on the \*(\w+)\* set"), None
    for line in log_lines(fpath):
        match = pattern.search(line)
        if match:
            split = match.group(1)
    return split


CONFIG_LINE = re.compile(r"^( *)([A-Z][A-Z0-9_]*):(?: (.*))?$")


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


def parse_directory(directory: str, keyword: str, ci95: bool = False) -> OrderedDict:
    """Parse every ``<directory>/<sub>/log.txt``; print and write the summary; return {keyword: mean}."""
    print(f"Parsing files in {directory}")
    lines, values = [], []
    for sub in listdir_nohidden(directory, sort=True):
        fpath = osp.join(directory, sub, "log.txt")
        if not osp.isfile(fpath):
            continue
        value = parse_log(fpath, keyword)
        if value is None:
            continue
        values.append(value)
        lines.append(f"file: {fpath}. {keyword}: {value:.2f}%. ")
    if not values:
        raise SystemExit(f"error: no '{END_SIGNAL}' block with '* {keyword}:' in any {directory}/*/log.txt")
    mean, std = mean_std(values, ci95)
    lines += ["===", f"Summary of directory: {directory}", f"* {keyword}: {mean:.2f}% +- {std:.2f}%", "==="]
    print("\n".join(lines))
    with atomic_write(osp.join(directory, "parse.txt")) as f:
        f.write("\n".join(lines))
    return OrderedDict([(keyword, mean)])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=str, help="folder holding seed*/log.txt (or experiments with --multi-exp)")
    parser.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    parser.add_argument(
        "--test-log", action="store_true", help="logs come from --eval-only runs (accepted for upstream compatibility)"
    )
    parser.add_argument("--multi-exp", action="store_true", help="average over the experiment folders in directory")
    parser.add_argument("--keyword", default="accuracy", type=str, help="metric to read (accuracy, error, macro_f1)")
    args = parser.parse_args(argv)

    if not osp.isdir(args.directory):
        raise SystemExit(f"error: {args.directory} is not a directory")
    if not args.multi_exp:
        return dict(parse_directory(args.directory, args.keyword, args.ci95))

    per_exp: dict[str, list[float]] = {}
    for exp in listdir_nohidden(args.directory, sort=True):
        exp_dir = osp.join(args.directory, exp)
        if os.path.isdir(exp_dir):
            for key, value in parse_directory(exp_dir, args.keyword, args.ci95).items():
                per_exp.setdefault(key, []).append(value)
    print("Average performance")
    averages = {key: sum(v) / len(v) for key, v in per_exp.items()}
    for key, avg in averages.items():
        print(f"* {key}: {avg:.2f}%")
    return averages


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as e:
        sys.exit(f"error: {e}")
