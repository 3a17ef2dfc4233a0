"""CoOp, KgCoOp, IVLP, MaPLe and PromptSRC keep their class features during evaluation (as MMA and MMRL do):
one text pass per evaluation while nothing learned changes, the same logits as recomputing them, a new
pass after a learned tensor changes, and every training forward encodes the text again."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_eval
from benchmarks.bench_speed import IMAGENET
from benchmarks.gpu_check import SMOKE_ARCH
from clip.model import CLIP

METHODS = ["CoOp", "KgCoOp", "IVLP", "MaPLe", "PromptSRC"]


@pytest.mark.parametrize("name", METHODS)
def test_class_features_are_kept_while_nothing_learned_changes(name: str) -> None:
    torch.manual_seed(0)
    clip_model = CLIP(SMOKE_ARCH).eval().requires_grad_(False)
    bench = bench_eval.Bench(name, clip_model, IMAGENET[:5], torch.device("cpu"))
    trainer, model = bench.trainer, bench.model
    image = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    passes: list[int] = []
    # ln_final ends every text pass (the full one and the shared-prefix one).
    handle = clip_model.ln_final.register_forward_pre_hook(lambda m, args: passes.append(1))

    def infer(fresh: bool = False) -> torch.Tensor:
        with torch.no_grad():
            if fresh:
                with model.eval_text.suspended():
                    return trainer.model_inference(image)
            return trainer.model_inference(image)

    try:
        first, second = infer(), infer()
        assert len(passes) == 1  # the second batch reads the kept features
        assert torch.equal(first, second) and torch.equal(second, infer(fresh=True))
        learned = next(p for p in model.learner.parameters())
        with torch.no_grad():
            learned.add_(0.5)  # an optimizer step or a checkpoint load changes a learned tensor in place
        passes.clear()
        changed = infer()
        assert len(passes) == 1 and not torch.equal(changed, first)
        assert torch.equal(changed, infer(fresh=True))
        passes.clear()
        model.learner.requires_grad_(True)
        for _ in range(2):
            trainer.model_inference(image)  # gradients on: training encodes the text every time
        assert len(passes) == 2
    finally:
        handle.remove()
