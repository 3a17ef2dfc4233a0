"""benchmarks/bench_eval.py: the "official" path of every method does the work of the official test step
(as read from the official repositories) and scores like ours, so its speed-up compares like with like."""
from __future__ import annotations

import pytest
import torch

from benchmarks import bench_eval
from benchmarks.bench_speed import IMAGENET
from benchmarks.gpu_check import SMOKE_ARCH
from clip.model import CLIP
from trainers.config import clip_trainers

BATCH = 3


def text_passes(step: str) -> int:
    """Passes of the text transformer per official test batch, all at 77 tokens, that the method's statement
    of its official step implies: the CoOp family, TCP, IVLP, MaPLe, PromptSRC, MetaPrompt and CLIP-Adapter
    encode every class prompt "every batch" (CoCoOp "for every image"); the others keep features encoded once
    (zero-shot CLIP, VPT, ProVP, the masked-MHA adapter at build; MMA and MMRL after the first batch) or have
    no text (linear probe)."""
    if "for every image" in step:
        return BATCH
    return 1 if "every batch" in step else 0


@pytest.fixture(scope="module")
def clip_model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(SMOKE_ARCH).eval().requires_grad_(False)


def test_every_method_states_its_official_test_step() -> None:
    missing = [name for name in clip_trainers() if bench_eval.official_step(name) == "?"]
    assert not missing, f"state the official test step on the trainer (OFFICIAL_TEST_STEP): {missing}"


@pytest.mark.parametrize("name", sorted(clip_trainers()))
def test_official_step_does_the_official_work_and_scores_as_ours(clip_model: CLIP, name: str) -> None:
    torch.manual_seed(0)
    bench = bench_eval.Bench(name, clip_model, IMAGENET[:6], torch.device("cpu"))
    if name == "LinearProbeCLIP":  # a fitted classifier, not the zeros before fitting
        with torch.no_grad():
            bench.model.learner.weight.normal_()
            bench.model.learner.bias.normal_()
    image = torch.randn(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    passes: list[tuple[int, int]] = []

    def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["x"]
        passes.append((x.shape[0], kwargs.get("start", 1)))

    with torch.no_grad():
        ours = bench.ours(image)
        bench.official(image)  # the first batch: what the official code keeps is computed here
        handle = clip_model.transformer.register_forward_pre_hook(record, with_kwargs=True)
        try:
            official = bench.official(image)
        finally:
            handle.remove()
    assert passes == [(77, 1)] * text_passes(bench_eval.official_step(name))
    assert official.shape == ours.shape == (BATCH, 6)
    assert torch.allclose(official.double(), ours.double(), atol=1e-4, rtol=0)
