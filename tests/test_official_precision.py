"""Where the official code computes in fp16 inside an fp32 run, ours does too (the two gaps of issue 22).

- KgCoOp's teacher is a second CLIP that the official code never casts to fp32: its class features are
  fp16 values, normalised in fp16. Ours once computed them with the fp32 CLIP: the loss moved in the 4th
  decimal (W = 8 amplifies the cosine) and the runs drifted apart.
- The deep-prompt methods cast every prompt with ``.half()`` where it joins the tokens; in an fp32 run the
  concatenation promotes it back, so the prompts enter rounded to fp16 and their gradients leave rounded to
  fp16. Ours once skipped the rounding: losses moved in the 4th decimal from the first steps.

Both were found by ``python -m tools.parity`` (the official code run with only the shims its fp32 path
needs); the seeded pins of tests/test_kgcoop.py and tests/test_deep_prompts.py were regenerated with it.
"""

from __future__ import annotations

import torch
from yacs.config import CfgNode

from clip import clip
from clip.model import build_model
from tests.tiny import seeded_state_dict
from trainers.coop.coop import CoOp
from trainers.coop.kgcoop import build_kgcoop
from trainers.deep_prompts.mechanism import DeepPromptHooks

CLASSNAMES = ["banded", "blotchy", "braided"]


def test_kgcoop_teacher_features_are_the_fp16_clip_ones_in_an_fp32_run() -> None:
    state = seeded_state_dict(seed=5)
    clip_model = build_model(state).float()  # the run's CLIP (PREC fp32)
    node = CfgNode({**CoOp.DEFAULTS, "CTX_INIT": "a photo of a"})
    cfg = CfgNode({"DATASET": CfgNode({"NAME": "DescribableTextures"}), "TRAINER": CfgNode({"COOP": node})})
    teacher = build_kgcoop(cfg, CLASSNAMES, clip_model).teacher()

    fp16 = build_model(state)  # the official teacher: the released layout, never cast to fp32
    tokens = clip.tokenize([f"a photo of a {c}, a type of texture." for c in CLASSNAMES])
    with torch.no_grad():
        expected = fp16.encode_text(tokens)
        fp32 = clip_model.encode_text(tokens)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    assert teacher.dtype == torch.float16
    assert torch.equal(teacher, expected)
    fp32 = fp32 / fp32.norm(dim=-1, keepdim=True)
    assert not torch.equal(teacher.float(), fp32)  # what ours computed before
    assert clip_model.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.float32  # the run's CLIP untouched


def test_deep_prompts_enter_and_leave_through_fp16_in_an_fp32_run() -> None:
    g = torch.Generator().manual_seed(0)
    deep = torch.randn(2, 8, generator=g, requires_grad=True)  # 2 prompt tokens of width 8
    x = torch.randn(5, 3, 8, generator=g)  # (L, N, D): SOS, 2 prompt rows, 2 more tokens; 3 prompts
    out = DeepPromptHooks([deep], text=True).before(2, x)
    rounded = deep.detach().half().float()
    assert torch.equal(out[1:3], rounded.unsqueeze(1).expand(-1, 3, -1))
    assert not torch.equal(rounded, deep.detach())  # the values move: the test can fail
    weights = torch.randn(out.shape, generator=g) * 1e-3
    (out * weights).sum().backward()
    per_prompt = weights[1:3].half().float()  # each prompt's gradient rounded to fp16, then summed in fp32
    assert torch.equal(deep.grad, per_prompt.sum(dim=1))


def test_the_image_tower_first_prompts_go_through_ln_pre_rounded() -> None:
    g = torch.Generator().manual_seed(1)
    first = torch.randn(2, 8, generator=g)
    ln_pre = torch.nn.LayerNorm(8)
    x = torch.randn(5, 3, 8, generator=g)
    out = DeepPromptHooks([], text=False, first=first, ln_pre=ln_pre).before(1, x)
    with torch.no_grad():
        assert torch.equal(out[5:], ln_pre(first.half().float()).unsqueeze(1).expand(-1, 3, -1))
