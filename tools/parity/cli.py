"""``python -m tools.parity``: run official implementations beside ours and compare, scenario by scenario.

    python -m tools.parity KgCoOp                      # every KgCoOp scenario (clones htyao89/KgCoOp)
    python -m tools.parity VPT --scenario seeded --official-dir ~/src/multimodal-prompt-learning \\
        --dassl-dir ~/src/Dassl.pytorch               # local checkouts (offline, air-gapped clusters)
    python -m tools.parity --all --checkouts ~/src     # every method; ~/src/<repo name> for each repository
    python -m tools.parity CoOp --scenario middle --write-pins   # also print the test's pinned values
    python -m tools.parity --list                       # the scenarios and their repositories

Exit status 1 when an ``EXACT True`` run differs from the official one (or a run fails), 2 on a usage error.
The policy, the shims and the summary of the last full run are in docs/parity.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from . import repos, runner
from .scenario import Scenario
from .scenarios import SCENARIOS, methods, of
from .session import Report, Setting, header, run_scenario, summary_table

DEFAULT_WORK = os.path.join(os.path.expanduser("~"), ".cache", "mmrl_parity")


# What the official code imports at run time (upstream Dassl, the official trainers), by import name: the
# ``parity`` extra of pyproject.toml, which a test keeps equal to this.
OFFICIAL_IMPORTS = {"tensorboard": "tensorboard", "tabulate": "tabulate", "wilds": "wilds",
                    "sklearn": "scikit-learn", "packaging": "packaging", "scipy": "scipy"}  # fmt: skip


class UsageError(Exception):
    """A command line that cannot run; reported as one ``error:`` line."""


def check_official_imports() -> None:
    """Stop before any run when the interpreter lacks what the official code imports (each side would fail)."""
    missing = [pkg for module, pkg in OFFICIAL_IMPORTS.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise UsageError(f"the official code imports what this environment lacks ({', '.join(missing)}): "
                         'pip install -e ".[parity]"')  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.parity", description=__doc__.split("\n")[0])
    p.add_argument("method", nargs="?", help="a registered trainer name with scenarios (see --list)")
    p.add_argument("--all", action="store_true", help="every method's scenarios")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--official-dir", help="a checkout of the method's official repository at its pinned commit")
    p.add_argument("--dassl-dir", help="a checkout of KaiyangZhou/Dassl.pytorch at its pinned commit")
    p.add_argument("--coop-dir", help="a checkout of KaiyangZhou/CoOp (CLIP-Adapter's release runs inside it)")
    p.add_argument("--openai-clip-dir", help="a checkout of openai/CLIP (the masked-MHA adapter's release uses it)")
    p.add_argument("--checkouts", help="a folder with one checkout per repository, named as on GitHub")
    p.add_argument("--work", default=os.environ.get("MMRL_PARITY_DIR", DEFAULT_WORK),
                   help=f"clones, worlds and run folders (default {DEFAULT_WORK} or $MMRL_PARITY_DIR)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="CPU threads of every side (default 1)")
    p.add_argument("--no-default", action="store_true", help="skip the default path (EXACT True only)")
    p.add_argument("--write-pins", action="store_true", help="print the tests' pinned values from the official runs")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run before it is killed")
    p.add_argument("--summary", help="also write the summary table (markdown) to this file")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p.parse_args(argv)


def selected(a: argparse.Namespace) -> list[Scenario]:
    if a.all == bool(a.method):
        raise UsageError("name one METHOD or --all (methods with scenarios: " + ", ".join(methods()) + ")")
    if a.all:
        chosen = list(SCENARIOS)
    elif a.method not in methods():
        raise UsageError(f"no scenarios for {a.method!r}; methods with scenarios: {', '.join(methods())}")
    else:
        chosen = of(a.method)
    if a.scenario:
        known = {s.name for s in chosen}
        unknown = [n for n in a.scenario if n not in known]
        if unknown:
            names = ", ".join(sorted(known))
            raise UsageError(f"unknown scenario {', '.join(unknown)} (of {a.method or 'all'}: {names})")
        chosen = [s for s in chosen if s.name in a.scenario]
    return chosen


def repo_dir(key: str, a: argparse.Namespace, given: str | None) -> str:
    """The verified checkout of repository ``key``: given, under --checkouts, or cloned into --work."""
    repo = repos.REPOS[key]
    if given is None and a.checkouts:
        given = os.path.join(a.checkouts, repo.url.rsplit("/", 1)[-1])
    return repos.checkout(repo, given, os.path.join(a.work, "repos"))


def paths_for(scenario: Scenario, a: argparse.Namespace) -> runner.Paths:
    """Where the official side runs from, and what it imports besides its own folder."""
    repo = repos.REPOS[scenario.repo]
    checkout = repo_dir(scenario.repo, a, a.official_dir)
    code = os.path.join(checkout, repo.code)
    if scenario.repo == "clip-adapter":  # one trainer file, run inside CoOp's repository as its README says
        coop = repo_dir("coop", a, a.coop_dir)
        return runner.Paths(coop, repo_dir("dassl", a, a.dassl_dir),
                            modules=(f"trainers.clip_adapter={os.path.join(checkout, 'clip_adapter.py')}",))
    if scenario.repo == "clip-mma":  # the release imports OpenAI's clip package, not Dassl
        return runner.Paths(code, extra=(repo_dir("openai-clip", a, a.openai_clip_dir),))
    if repo.dassl:  # its own forked Dassl, in the same checkout (ProVP's)
        return runner.Paths(code, os.path.join(checkout, repo.dassl))
    return runner.Paths(code, repo_dir("dassl", a, a.dassl_dir))


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.list:
        for s in SCENARIOS:
            kind = "driver" if s.driver else f"{len(s.runs)} runs"
            print(f"{s.method:<18} {s.name:<26} {repos.REPOS[s.repo].short:<52} {kind}")
        return 0
    try:
        chosen = selected(a)
        if a.official_dir and len({s.repo for s in chosen}) > 1:
            raise UsageError("--official-dir fits one repository; for several use --checkouts DIR")
        paths = {s.repo: paths_for(s, a) for s in chosen}  # every checkout verified before any run
        check_official_imports()
        reports: list[Report] = []
        for s in chosen:
            print(header(s), flush=True)
            r = run_scenario(s, Setting(paths[s.repo], a.work, a.threads, not a.no_default, a.write_pins, a.timeout))
            for line in r.lines:
                print(line)
            if r.failed or r.difference:
                print("  " + (r.failed or r.difference or ""))
            print(f"  => {r.status} ({r.seconds:.0f} s)\n", flush=True)
            reports.append(r)
    except (UsageError, repos.CheckoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = summary_table(reports)
    print(table)
    if a.summary:
        with open(a.summary + ".tmp", "w") as f:
            f.write(table + "\n")
        os.replace(a.summary + ".tmp", a.summary)
    return 1 if any(r.status != "EQUAL" for r in reports) else 0
