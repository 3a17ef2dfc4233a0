"""Recipes run in-process on one side: the unit tests' seeded pins (a trainer built on fixed class names,
hand-fed steps, its outputs), for the official code and for ours with the same code.

Started by the launcher with the side's code folder first on ``sys.path``, so ``train``, ``dassl`` and
``trainers`` are that side's (this file imports nothing of this repository)::

    python launch.py --side official ... -- drivers.py steps --side official --clip CLIP --out OUT --args JSON

The recipes print nothing of their own; they write their values (full precision) as JSON to ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import types
from typing import Any

import torch

# The recipes' images and labels: batch b of step i is IMAGES[i], labels LABELS[i].
LABELS = [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1], [2, 3, 4, 0]]


def make_cfg(a: dict, side: str, clip: str, exact: bool) -> Any:
    """The side's default config with its trainers' nodes, then the recipe's options."""
    import train
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    if a.get("config_file"):
        cfg.merge_from_file(a["config_file"])
    cfg.merge_from_list(["TRAINER.NAME", a["trainer"], "DATASET.NAME", a["dataset"], "INPUT.SIZE", (32, 32)])
    if side == "official":
        cfg.merge_from_list(["MODEL.BACKBONE.NAME", "ViT-B/16"])  # the launcher hands its download the world's file
    else:
        cfg.merge_from_list(["MODEL.BACKBONE.PATH", clip] + (["EXACT", True] if exact else []))
    cfg.merge_from_list(a.get("opts", []))
    if a.get("node"):  # only the keys the side's node has (MMRL's and MMRL++'s differ)
        node = cfg.TRAINER[a["node"]]
        node.update({k: v for k, v in a["values"].items() if k in node})
    cfg.freeze()
    return cfg


def fixed_trainer(cfg: Any, classnames: list[str]) -> Any:
    """The registered trainer on ``classnames`` only: no dataset is read."""
    from dassl.engine import TRAINER_REGISTRY

    class FixedClasses(TRAINER_REGISTRY.get(cfg.TRAINER.NAME)):
        def build_data_loader(self) -> None:
            self.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=classnames))
            self.lab2cname = dict(enumerate(classnames))

    return FixedClasses(cfg)


def outputs(model_out: Any, form: str, side: str) -> dict[str, list[float]]:
    """The eval-mode outputs the tests pin, by the test's form."""
    if form == "mmrl":  # the official model returns a tuple, ours a record with names
        if side == "official":
            logits, fusion = model_out[0], model_out[2]
        else:
            logits, fusion = model_out.logits, model_out.logits_fusion
        return {"fusion0": fusion[0].tolist(), "logits5": logits[5].tolist()}
    return {"logits0": model_out[0].tolist(), "logits5": model_out[-1].tolist(), "all": model_out.tolist()}


def state_values(t: Any, a: dict, side: str) -> dict[str, float]:
    """Single learned values the test pins (``a["state"]``: name -> [key, index...]), after the steps."""
    if not a.get("state"):
        return {}
    learner = t.model.adapter_learner if side == "official" else t.model.learner
    state = learner.state_dict()
    return {name: state[key][tuple(index)].item() for name, (key, *index) in a["state"].items()}


def steps(a: dict, side: str, clip: str, exact: bool) -> dict[str, Any]:
    """Build on seed 7, run the scheduled steps on fixed batches, then one eval-mode forward."""
    cfg = make_cfg(a, side, clip, exact)
    torch.manual_seed(a.get("build_seed", 7))
    t = fixed_trainer(cfg, a["classnames"])
    n, shape = a["steps"], (4, 3, 32, 32)
    g = None if a.get("images") == "global" else torch.Generator().manual_seed(0)
    images = torch.randn(n, *shape) if g is None else torch.randn(n, *shape, generator=g)
    labels = torch.tensor([LABELS[i % len(LABELS)] for i in range(n)])
    t.set_model_mode("train")
    t.num_batches = a.get("num_batches", 100)
    losses, accs, lrs, summaries = [], [], [], []
    for i in range(n):
        if a.get("schedule") == "epochs":  # epochs of num_batches batches: the lr steps at each epoch's end
            t.epoch, t.batch_idx = divmod(i, t.num_batches)
        else:
            t.epoch, t.batch_idx = 0, i % t.num_batches
        summary = t.forward_backward({"img": images[i], "label": labels[i]})
        if side == "ours" and hasattr(t, "aggregate_epoch") and t.batch_idx == t.num_batches - 1:
            # PromptSRC's GPA: the official forward_backward adds the epoch's prompts at its last batch;
            # ours does it in after_epoch, whose validation and checkpoints a driver has no use for.
            t.aggregate_epoch()
        summaries.append(summary)
        losses.append(summary.get("loss"))  # None where the loss is printed as named terms (ProVP-Ref)
        accs.append(summary.get("acc"))
        lrs.append(t.get_current_lr())
    t.set_model_mode("eval")
    extra = torch.randn(a["eval"], *shape[1:]) if g is None else torch.randn(a["eval"], *shape[1:], generator=g)
    with torch.no_grad():
        out = t.model_inference(extra) if a.get("inference") else t.model(extra)
    # Asked for: every printed value of every step; the next number the global generator draws (every
    # draw of the build and the steps was the official one).
    more = {"summaries": summaries} if a.get("summaries") else {}
    if a.get("next_draw"):
        more["next_draw"] = torch.rand(1).item()
    return {"losses": losses, "accs": accs, "lrs": lrs, **outputs(out, a.get("form", ""), side),
            **state_values(t, a, side), **more}  # fmt: skip


def features(a: dict, side: str, clip: str, exact: bool) -> dict[str, Any]:
    """Zero-shot CLIP's class features as its trainer builds them (``text_features``)."""
    cfg = make_cfg(a, side, clip, exact)
    torch.manual_seed(0)
    t = fixed_trainer(cfg, a["classnames"])
    return {"features": t.text_features.tolist()}  # where the official trainer keeps them, ours too


def release_steps(a: dict, side: str, clip: str, exact: bool) -> dict[str, Any]:
    """The masked-MHA adapter: the release's model and its Adam training step (official side), our trainer
    (ours), on the same weights, seed, images and classes."""
    if side != "official":
        return steps(a, side, clip, exact)
    from fomo.models.clip.clip_transformer_adapter_text import CLIPTransformerAdapterText

    torch.manual_seed(a.get("build_seed", 7))
    model = CLIPTransformerAdapterText("ViT-B/16", root=os.path.dirname(clip))
    model.to_cpu()
    for name, p in model.named_parameters():  # the release trains the parameters named "adapter..."
        p.requires_grad = any(learnable in name for learnable in model.learnable_param_names)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a["lr"],
                             weight_decay=a["weight_decay"])  # fmt: skip
    model.precompute_prompt_features(a["prompts"])
    g = torch.Generator().manual_seed(0)
    n = a["steps"]
    images = torch.randn(n, 4, 3, 32, 32, generator=g)
    labels = torch.tensor([LABELS[i % len(LABELS)] for i in range(n)])
    model.train()
    losses, accs = [], []
    for i in range(n):
        optim.zero_grad()
        logits = model(images[i]).squeeze(-1)
        loss = torch.nn.functional.cross_entropy(logits, labels[i])
        loss.backward()
        optim.step()
        model.logit_scale.data = torch.clamp(model.logit_scale.data, 0, 4.6052)  # the release's clamp
        losses.append(loss.item())
        accs.append((logits.argmax(-1) == labels[i]).float().mean().item() * 100)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(a["eval"], 3, 32, 32, generator=g))
    return {"losses": losses, "accs": accs, "lrs": [a["lr"]] * n, **outputs(out, "", side)}


RECIPES = {"steps": steps, "features": features, "release_steps": release_steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--side", choices=["official", "ours"], required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--args", default="{}")
    parser.add_argument("--exact", action="store_true")
    a = parser.parse_args()
    values = RECIPES[a.recipe](json.loads(a.args), a.side, a.clip, a.exact)
    with open(a.out + ".tmp", "w") as f:
        json.dump(values, f)
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
