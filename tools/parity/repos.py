"""The official repositories at their pinned commits: where they come from and how a checkout is checked.

A checkout is a folder whose ``git rev-parse HEAD`` is the pinned commit. Without ``--official-dir`` /
``--dassl-dir`` the tool clones the public repository into its cache (``git clone`` then ``git checkout
<commit>``); with them, it uses the folder as it is and refuses it if HEAD is another commit (a changed
official code would make every comparison meaningless). Nothing of these repositories is kept in ours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


class CheckoutError(Exception):
    """A checkout that cannot be used: not a git folder, another commit, a failed clone."""


@dataclass(frozen=True)
class Repo:
    """One official repository: ``code`` is the folder (inside the checkout) that holds its train.py;
    ``dassl``, the folder holding its own forked Dassl, if it runs on one instead of upstream's."""

    key: str
    url: str
    commit: str
    code: str = ""
    dassl: str = ""

    @property
    def short(self) -> str:
        return f"{self.url.removeprefix('https://github.com/')}@{self.commit[:7]}"


GITHUB = "https://github.com/"
REPOS = {
    r.key: r
    for r in (
        Repo("dassl", GITHUB + "KaiyangZhou/Dassl.pytorch", "c61a1b570ac6333bd50fb5ae06aea59002fb20bb"),
        Repo("coop", GITHUB + "KaiyangZhou/CoOp", "ff61507c790454bce7c5052c3ac39e60772f1f89"),
        Repo("kgcoop", GITHUB + "htyao89/KgCoOp", "c43ccc32c8739f64b165cfa205fcc6c0f5bb5b17", "KgCoOp"),
        Repo("mpl", GITHUB + "muzairkhattak/multimodal-prompt-learning", "69bce21ae8eda80ad6187534b2dce09cf6c59e17"),
        Repo("promptsrc", GITHUB + "muzairkhattak/PromptSRC", "bb95c77b634d63488f2cad81ff4a72d53bdd06d5"),
        Repo("mma", GITHUB + "ZjjConan/Multi-Modal-Adapter", "547ee345a4dc5d60d43d3aa54e8eee50a107f591"),
        Repo("mmrl", GITHUB + "yunncheng/MMRL", "27d8821f6ac135a1d0c8e4c5ed78af14df0cd82e"),
        Repo("clip-mma", GITHUB + "dqmis/clip-mma", "1287cb5125500bd6bedff4ee7a6728784490f5c7"),
        Repo("openai-clip", GITHUB + "openai/CLIP", "d05afc436d78f1c48dc0dbf8e5980a9d471f35f6"),
        Repo("tcp", GITHUB + "htyao89/Textual-based_Class-aware_prompt_tuning",
             "bd97bec6bd4901baaf318e9e8f073f618d12066e"),
        Repo("provp", GITHUB + "MCG-NJU/ProVP", "837b8fb3f7a3a170ba148e92d11ac8ca3d1982a2", "ProVP", "Dassl"),
        Repo("metaprompt", GITHUB + "Vill-Lab/2024-TIP-MetaPrompt", "ca996074f789f67c8f8dde1c38a8da9a6c614e90"),
        Repo("clip-adapter", GITHUB + "gaopengcuhk/CLIP-Adapter", "08d07f8b2ecafc6f1479fe636b26d464d7a5574e"),
    )
}


def head(folder: str) -> str:
    """The commit checked out in ``folder`` (``git rev-parse HEAD``)."""
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except OSError as e:
        raise CheckoutError(f"cannot run git ({e}): install git, which checks the official commits") from e
    except subprocess.CalledProcessError as e:
        raise CheckoutError(f"{folder} is not a git checkout: give a `git clone` of the repository") from e
    return out.stdout.strip()


def verify(repo: Repo, folder: str) -> str:
    """``folder`` if it is a checkout of ``repo`` at its pinned commit; raises ``CheckoutError`` otherwise."""
    if not os.path.isdir(folder):
        raise CheckoutError(f"{folder}: no such folder (a checkout of {repo.url} at {repo.commit[:7]})")
    found = head(folder)
    if found != repo.commit:
        raise CheckoutError(
            f"{folder} is at commit {found[:12]}, not the pinned {repo.commit[:12]} of {repo.url}: "
            f"run `git -C {folder} checkout {repo.commit}` or let the tool clone it"
        )
    return folder


def clone(repo: Repo, cache: str, url: str | None = None) -> str:
    """A checkout of ``repo`` at its commit under ``cache`` (cloned from ``url or repo.url`` once)."""
    folder = os.path.join(cache, repo.key)
    if os.path.isdir(folder):
        return verify(repo, folder)
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(cache, exist_ok=True)
    steps = (["git", "clone", "--quiet", url or repo.url, tmp], ["git", "-C", tmp, "checkout", "--quiet", repo.commit])
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckoutError(f"`{' '.join(cmd)}` failed: {done.stderr.strip().splitlines()[-1:]}")
    os.replace(tmp, folder)
    return verify(repo, folder)


def checkout(repo: Repo, given: str | None, cache: str, url: str | None = None) -> str:
    """The checkout to run: ``given`` (verified) or a clone in ``cache``."""
    return verify(repo, os.path.abspath(given)) if given else clone(repo, cache, url)
