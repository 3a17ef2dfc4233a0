"""Run a ``train.py`` (or a driver script) with the parity recorders, and for the official side its shims.

Started as a plain script (``python launch.py ...``) with the code's own folder as working directory, so
that folder's ``clip``, ``dassl``, ``trainers`` and ``datasets`` are the ones imported: this file imports
nothing of this repository and only the standard library and torch itself::

    python launch.py --side official --record REC --clip tiny.pt --dassl DASSL -- train.py ARGS...
    python launch.py --side ours --record REC -- train.py ARGS...

Nothing is edited on disk. The shims (official side only, the list and the reasons are in docs/parity.md)
and the recorders are applied right after the module they concern is imported, by a meta-path finder.
The recorders write ``REC/steps.jsonl`` (every dict that reaches ``MetricMeter.update``, at full
precision) and ``REC/logits-<k>.pt`` (the model outputs of the k-th evaluation, in test order).
"""

from __future__ import annotations

import argparse
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import runpy
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

Patch = Callable[[ModuleType], None]


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``patch(module)`` right after a module whose name ``select(name)`` picks has executed."""

    def __init__(self, select: Callable[[str], Patch | None]) -> None:
        self.select = select

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        patch = self.select(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                loader = spec.loader
                original = loader.exec_module

                def exec_module(module: ModuleType, original: Callable = original, patch: Patch = patch) -> None:
                    original(module)
                    patch(module)

                loader.exec_module = exec_module  # type: ignore[method-assign]
                return spec
        return None


# --- recorders (both sides) -------------------------------------------------------------------------


class Recorder:
    """Appends training-step dicts and evaluation outputs under one folder."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.evaluations = 0
        os.makedirs(folder, exist_ok=True)

    def step(self, values: dict) -> None:
        row = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
        with open(os.path.join(self.folder, "steps.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    def outputs(self, batches: list[torch.Tensor]) -> None:
        if not batches:
            return
        path = os.path.join(self.folder, f"logits-{self.evaluations}.pt")
        torch.save(torch.cat(batches), path + ".tmp")
        os.replace(path + ".tmp", path)
        self.evaluations += 1


def record_meters(module: ModuleType, recorder: Recorder) -> None:
    """``MetricMeter.update`` also records its dict (the values a training step printed)."""
    meter = module.MetricMeter
    update = meter.update

    def recorded(self: Any, input_dict: Any) -> None:
        if isinstance(input_dict, dict):
            recorder.step(input_dict)
        update(self, input_dict)

    meter.update = recorded


def record_evaluator(module: ModuleType, recorder: Recorder) -> None:
    """``Classification.process`` keeps each batch's outputs; ``evaluate`` writes them."""
    cls = module.Classification
    process, evaluate = cls.process, cls.evaluate

    def kept(self: Any, mo: torch.Tensor, gt: torch.Tensor) -> None:
        self.__dict__.setdefault("_parity_outputs", []).append(mo.detach().float().cpu().clone())
        process(self, mo, gt)

    def written(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorder.outputs(self.__dict__.pop("_parity_outputs", []))
        return evaluate(self, *args, **kwargs)

    cls.process, cls.evaluate = kept, written


# --- shims (official side) ---------------------------------------------------------------------------


def shim_cuda() -> None:
    """``.cuda()`` of a tensor or a module returns it unchanged: the run stays on the CPU."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]


def shim_module_half_in(filename: str) -> None:
    """``Module.half()`` called from ``filename`` returns the module unchanged.

    MaPLe's prompt learner (``trainers/maple.py``) casts its ``proj`` layer to fp16 whatever PREC is; in an
    fp32 run its fp32 prompts then meet fp16 weights, which fails. Other ``Module.half()`` calls are left
    alone: CoCoOp's and MMA's run only in fp16 runs, KgCoOp's meta-network is never in its forward, and
    TCP's fp16 meta-network is what its fp32 runs compute (ours reproduces it). ``Tensor.half()`` is left
    alone where it only rounds: a prompt cast to fp16 and concatenated with fp32 tokens is promoted back,
    which is what the official fp32 runs compute.
    """
    half = torch.nn.Module.half

    def module(self: torch.nn.Module) -> torch.nn.Module:
        if sys._getframe(1).f_code.co_filename.replace(os.sep, "/").endswith(filename):
            return self
        return half(self)

    torch.nn.Module.half = module  # type: ignore[method-assign]


def shim_tensor_half_in(filename: str) -> None:
    """``Tensor.half()`` called from ``filename`` returns the tensor unchanged.

    PromptSRC's zero-shot logits multiply the (fp32, see ``shim_fp32_clip``) zero-shot image features by
    ``fixed_embeddings.half()``, a product of an fp32 and an fp16 matrix, which fails in an fp32 run.
    """
    half = torch.Tensor.half

    def tensor(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if sys._getframe(1).f_code.co_filename.replace(os.sep, "/").endswith(filename):
            return self
        return half(self, *args, **kwargs)

    torch.Tensor.half = tensor  # type: ignore[method-assign]


class _AdamEps(ModuleType):
    """``torch`` as Dassl's optimizer module sees it: ``torch.optim.Adam`` with eps 1e-3 unless given."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.optim = ModuleType("torch.optim")
        self.optim.__dict__.update(torch.optim.__dict__)
        self.optim.Adam = functools.partial(torch.optim.Adam, eps=1e-3)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def shim_adam_eps(module: ModuleType) -> None:
    """Dassl's Adam with ``eps=1e-3``: the edit of ``dassl/optim/optimizer.py`` TCP's README asks for (its
    fp16 meta-network gives NaN losses with Adam's default eps); every TCP result was produced with it."""
    module.torch = _AdamEps()


def shim_zero_grad_keeps_grads() -> None:
    """``Optimizer.zero_grad()`` zeroes gradients in place (``set_to_none=False``), as torch < 2.0 did.

    MetaPrompt's official environment is torch 1.10.1: with its default, a parameter whose gradient was
    zeroed keeps a (zero) gradient, and SGD's weight decay and momentum then still move it; torch 2's
    default (``None``) skips it. Its published numbers are the torch 1.10 ones (docs/methods/metaprompt.md).
    """
    zero_grad = torch.optim.Optimizer.zero_grad

    def keep(self: Any, set_to_none: bool = False) -> None:
        zero_grad(self, set_to_none=set_to_none)

    torch.optim.Optimizer.zero_grad = keep  # type: ignore[method-assign]


def shim_to_cuda() -> None:
    """``Tensor.to("cuda")`` stays on the CPU: CLIP-Adapter moves its tokenized prompts with it."""
    to = torch.Tensor.to

    def cpu(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        args = tuple("cpu" if str(x).startswith("cuda") else x for x in args)
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return to(self, *args, **kwargs)

    torch.Tensor.to = cpu  # type: ignore[method-assign]


def load_module(name: str, path: str) -> ModuleType:
    """The file ``path`` imported as module ``name`` (and set on its parent package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def shim_adapter_width(module: ModuleType, clip_path: str) -> None:
    """CLIP-Adapter's ``Adapter(1024, 4)`` is sized by the world's feature width.

    The release writes its adapter for 1024-d features (RN50's); on another width it stops at its first
    product ("mat1 and mat2 shapes cannot be multiplied"). Only the size changes: the layers, their draws
    and the forward are the release's.
    """
    width = torch.load(clip_path, map_location="cpu", weights_only=True)["text_projection"].shape[1]
    init = module.Adapter.__init__

    def sized(self: torch.nn.Module, c_in: int, reduction: int = 4) -> None:
        init(self, width, reduction)

    module.Adapter.__init__ = sized


# Shims a scenario asks for by name (Scenario.shims): (the module after whose import it applies, or "" for at
# start-up; the shim, called with that module and the world's CLIP file, or with nothing at start-up).
SCENARIO_SHIMS: dict[str, tuple[str, Callable[..., None]]] = {
    "adam_eps": ("dassl.optim.optimizer", lambda module, clip: shim_adam_eps(module)),
    "zero_grad_keeps_grads": ("", shim_zero_grad_keeps_grads),
    "to_cuda": ("", shim_to_cuda),
    "adapter_width": ("trainers.clip_adapter", shim_adapter_width),
}


def shim_pkg_resources() -> None:
    """A ``pkg_resources`` holding ``packaging``, where setuptools no longer ships it (setuptools 81+).

    TCP's ``clip/clip.py`` (OpenAI's of 2021) imports ``packaging`` from it to compare torch versions.
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging.version

        stand_in = ModuleType("pkg_resources")
        stand_in.packaging = packaging  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stand_in


def shim_missing_modules(names: tuple[str, ...]) -> None:
    """Each of ``names`` imports as an empty module.

    ProVP's ``trainers/__init__.py`` imports ``trainers.vpclip``, which no commit of its repository has;
    nothing of the code uses a name from it (docs/methods/provp.md), and without it ``train.py`` stops at
    its imports.
    """
    for name in names:
        sys.modules.setdefault(name, ModuleType(name))


def shim_download(module: ModuleType, path: str) -> None:
    """``clip._download`` returns the world's CLIP file instead of fetching OpenAI's weights."""
    module._download = lambda *args, **kwargs: path


def shim_fp32_clip(module: ModuleType, zero_shot_only: bool = False) -> None:
    """The module's ``load_clip_to_cpu`` returns the CLIP in fp32 (after the release's fp16 rounding).

    For the frozen CLIPs whose official code has no fp32 path: zero-shot CLIP reads no precision setting
    (fp16 on a GPU; compared here in fp32, as ours runs it on a CPU), and PromptSRC's zero-shot image
    encoder (``load_clip_to_cpu(cfg, True)``) stays fp16 while an fp32 run feeds it fp32 images, which fails.
    """
    load = getattr(module, "load_clip_to_cpu", None)
    if load is None or getattr(load, "_parity_fp32", False):
        return

    @functools.wraps(load)
    def fp32(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = load(*args, **kwargs)
        zero_shot = len(args) > 1 and bool(args[1]) or bool(kwargs.get("zero_shot_model"))
        return model.float() if zero_shot or not zero_shot_only else model

    fp32._parity_fp32 = True  # type: ignore[attr-defined]
    module.load_clip_to_cpu = fp32


def shim_warmup(module: ModuleType) -> None:
    """Upstream Dassl's warmup schedulers pass ``verbose`` to ``_LRScheduler``, which torch 2.7+ removed."""
    base = module._BaseWarmupScheduler

    def __init__(self: Any, optimizer: Any, successor: Any, warmup_epoch: int, last_epoch: int = -1,
                 verbose: bool = False) -> None:  # fmt: skip
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        torch.optim.lr_scheduler.LRScheduler.__init__(self, optimizer, last_epoch)

    base.__init__ = __init__


def shim_release_loader(module: ModuleType) -> None:
    """The masked-MHA adapter release's ``ClipBase._load_clip_to_cpu`` takes a state dict too.

    It reads OpenAI's TorchScript archives only (its state-dict branch uses the archive for the input
    resolution); a state dict gets the same ``clip.build_model`` and the transform of its resolution.
    """
    from clip import clip

    def load(self: Any, backbone: str) -> tuple[torch.nn.Module, Any]:
        path = clip._download(clip._MODELS[backbone], self._root)
        model = clip.build_model(torch.load(path, map_location="cpu", weights_only=True))
        return model, clip._transform(model.visual.input_resolution)

    module.ClipBase._load_clip_to_cpu = load


class _FullLoad(ModuleType):
    """``torch`` as upstream Dassl's torchtools sees it: ``torch.load`` unpickles whole checkpoints."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)


def shim_full_load(module: ModuleType) -> None:
    """Upstream Dassl's ``load_checkpoint`` reads pickled checkpoints; torch 2.6+ loads weights only by default."""
    module.torch = _FullLoad()


# --- set-up ------------------------------------------------------------------------------------------


def patches(side: str, recorder: Recorder, clip_path: str | None, shims: tuple[str, ...] = (),
            modules: tuple[str, ...] = ()) -> Callable[[str], Patch | None]:  # fmt: skip
    """Which patch a module gets when it is imported, by module name (``shims``: the scenario's named shims
    applied after an import; ``modules``: ``NAME=FILE`` imported right after NAME's package)."""
    table: dict[str, Patch] = {
        "dassl.utils.meters": lambda m: record_meters(m, recorder),
        "dassl.evaluation.evaluator": lambda m: record_evaluator(m, recorder),
    }
    if side == "official":
        table["dassl.optim.lr_scheduler"] = shim_warmup
        table["dassl.utils.torchtools"] = shim_full_load
        if clip_path:
            table["clip.clip"] = lambda m: shim_download(m, clip_path)
            # TCP's trainer loads its CLIP through its own copy of the clip package
            table["trainers.clip_text.clip"] = lambda m: shim_download(m, clip_path)
        table["fomo.models.clip.clip_base"] = shim_release_loader
        table["trainers.zsclip"] = shim_fp32_clip
        table["trainers.promptsrc"] = lambda m: shim_fp32_clip(m, zero_shot_only=True)
        for shim in shims:
            after, apply = SCENARIO_SHIMS[shim]
            if after:
                table[after] = lambda m, apply=apply: apply(m, clip_path)
        for spec in modules:
            name, path = spec.split("=", 1)
            then = table.get(name, lambda m: None)  # a shim of the loaded module
            table[name.rpartition(".")[0]] = lambda m, name=name, path=path, then=then: then(load_module(name, path))
    return table.get


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", choices=["official", "ours"], required=True)
    parser.add_argument("--record", required=True, help="folder for steps.jsonl and logits-<k>.pt")
    parser.add_argument("--clip", help="CLIP weights returned by the official clip._download")
    parser.add_argument("--dassl", help="upstream Dassl checkout, put on sys.path after the code's folder")
    parser.add_argument("--shim", action="append", default=[], choices=sorted(SCENARIO_SHIMS),
                        help="a scenario's shim (official side), repeatable")  # fmt: skip
    parser.add_argument("--module", action="append", default=[], help="NAME=FILE imported after NAME's package")
    parser.add_argument("script", help="the script to run, relative to the working directory")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    a = parser.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.getcwd())
    if a.dassl:
        sys.path.insert(1, os.path.abspath(a.dassl))
    recorder = Recorder(os.path.abspath(a.record))
    if a.side == "official":
        shim_cuda()
        shim_module_half_in("trainers/maple.py")
        shim_tensor_half_in("trainers/promptsrc.py")
        shim_missing_modules(("trainers.vpclip",))
        shim_pkg_resources()
        for shim in a.shim:
            after, apply = SCENARIO_SHIMS[shim]
            if not after:
                apply()
    modules = tuple(f"{m.split('=', 1)[0]}={os.path.abspath(m.split('=', 1)[1])}" for m in a.module)
    select = patches(a.side, recorder, a.clip and os.path.abspath(a.clip), tuple(a.shim), modules)
    sys.meta_path.insert(0, _AfterImport(select))
    sys.argv = [a.script, *(a.args[1:] if a.args[:1] == ["--"] else a.args)]
    runpy.run_path(a.script, run_name="__main__")


if __name__ == "__main__":
    main()
