"""MMA (Multi-Modal Adapter, Yang et al. CVPR 2024): the adapter's equations, its gradient scaling, the
parameter count, the published schedule, config errors, the official run pinned, and train.py end to end."""

from __future__ import annotations

import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from tiny import seeded_state_dict, tiny_clip_config, without_data

import trainers.mma.mma
from clip import clip
from clip.model import CLIP
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.optim import build_lr_scheduler, build_optimizer
from datasets.synthetic import make_dataset
from trainers.base import ConfigError
from trainers.config import extend_cfg
from trainers.mma.mma import AdapterHooks, AdapterLearner, MultiModalAdapter, build_mma

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, "configs", "trainers", "MultiModalAdapter")
CLASSES = ["red_apple", "dog", "cat"]


def mma_cfg(**settings):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(CONFIGS, "vit_b16_ep5.yaml"))
    cfg.TRAINER.MMADAPTER.update(settings)
    return cfg


@pytest.fixture(scope="module")
def tiny_clip() -> CLIP:
    torch.manual_seed(0)
    model = CLIP(tiny_clip_config()).eval().requires_grad_(False)
    with torch.no_grad():  # a non-trivial frozen CLIP: biases and LayerNorms off their defaults
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def model_with_random_adapters(clip_model: CLIP, **settings) -> trainers.mma.mma.MMAModel:
    torch.manual_seed(1)
    model = build_mma(mma_cfg(**settings), CLASSES, clip_model)
    with torch.no_grad():  # biases start at 0: make every term of the branch visible
        for p in model.learner.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def branch(learner: AdapterLearner, adapters, i: int, block, x: torch.Tensor) -> torch.Tensor:
    """The paper's branch written out: up_i(shared_i(down_i(ln_1_i(x))))."""
    a, s = adapters[str(i)], learner.shared_adapter[str(i)]
    return F.linear(F.relu(s[0](F.relu(a.down[0](block.ln_1(x))))), a.up.weight, a.up.bias)


def reference_tower(learner: AdapterLearner, adapters, blocks, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """Each block, plus alpha * its branch for layers 5..12 only."""
    for i, block in enumerate(blocks, start=1):
        mask = torch.full((x.shape[0],) * 2, float("-inf")).triu_(1) if causal else None
        y = block(x, attn_mask=mask)
        x = y + branch(learner, adapters, i, block, x) * learner.scale if 5 <= i <= 12 else y
    return x


def test_both_towers_add_the_scaled_branch_after_blocks_5_to_12(tiny_clip):
    model = model_with_random_adapters(tiny_clip, ADAPTER_SCALE=0.1)
    learner = model.learner
    image = torch.randn(2, 3, 32, 32)
    x = tiny_clip.visual.embed(image)
    expected = reference_tower(learner, learner.visual_adapter, tiny_clip.visual.transformer.resblocks, x, False)
    hooks = AdapterHooks(learner, learner.visual_adapter, tiny_clip.visual.transformer.resblocks, adapt_input=True)
    assert torch.equal(tiny_clip.visual.transformer(x, inject=hooks), expected)

    t = tiny_clip.position_text(learner.token_embedding)
    expected = reference_tower(learner, learner.text_adapter, tiny_clip.transformer.resblocks, t, True)
    hooks = AdapterHooks(learner, learner.text_adapter, tiny_clip.transformer.resblocks, adapt_input=False)
    assert torch.equal(tiny_clip.transformer(t, causal=True, inject=hooks), expected)
    # one shared projection per layer, and it is the one both towers call
    assert sorted(learner.shared_adapter.keys(), key=int) == [str(i) for i in range(5, 13)]


def test_layer_zero_adapts_the_input_embeddings(tiny_clip):
    model = model_with_random_adapters(tiny_clip, ADAPTER_START=0, ADAPTER_END=2, ADAPTER_SCALE=0.1)
    learner = model.learner
    emb = learner.token_embedding
    a, s = learner.text_adapter["0"], learner.shared_adapter["0"]
    assert torch.equal(learner.text_embeddings(), emb + 0.1 * a.up(s(a.down(emb))))
    x = tiny_clip.visual.embed(torch.randn(1, 3, 32, 32))
    a = learner.visual_adapter["0"]
    hooks = AdapterHooks(learner, learner.visual_adapter, tiny_clip.visual.transformer.resblocks, adapt_input=True)
    assert torch.equal(hooks.before(1, x), x + a.up(s(a.down(x))) * 0.1)


def test_zero_up_projections_give_zero_shot_clip(tiny_clip):
    model = model_with_random_adapters(tiny_clip)
    with torch.no_grad():
        for adapters in (model.learner.text_adapter, model.learner.visual_adapter):
            for a in adapters.values():
                a.up.weight.zero_(), a.up.bias.zero_()
    image = torch.randn(3, 3, 32, 32)
    tokens = clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSES])
    zero_shot, _ = tiny_clip(image, tokens)
    model.learner.eval()
    assert torch.equal(model(image), zero_shot)
    model.learner.train()
    assert not torch.equal(model_with_random_adapters(tiny_clip)(image), zero_shot)


def test_gradient_scaling_trains_the_adapters_as_if_alpha_were_one(tiny_clip):
    """Adapter grads are 1/alpha times those of the plain formula; the backbone's input grad is the plain one."""
    alpha = 0.001
    model = model_with_random_adapters(tiny_clip, ADAPTER_SCALE=alpha)
    learner, block = model.learner, tiny_clip.visual.transformer.resblocks[6]
    params = list(learner.visual_adapter["7"].parameters()) + list(learner.shared_adapter["7"].parameters())
    x = torch.randn(5, 2, 64, requires_grad=True)
    target = torch.randn(5, 2, 64)

    hooks = AdapterHooks(learner, learner.visual_adapter, tiny_clip.visual.transformer.resblocks, adapt_input=False)
    out = hooks.after(7, block, x, block(hooks.before(7, x)))
    scaled = torch.autograd.grad((out * target).sum(), [x, *params])
    plain_out = block(x) + alpha * branch(learner, learner.visual_adapter, 7, block, x)
    plain = torch.autograd.grad((plain_out * target).sum(), [x, *params])

    assert torch.equal(out, plain_out)
    assert torch.allclose(scaled[0], plain[0], rtol=1e-5, atol=1e-7)
    for g_scaled, g_plain in zip(scaled[1:], plain[1:]):
        assert g_plain.abs().max() > 0
        # float32: the 1/alpha enters at another point of the chain, so allow rounding relative to the largest entry
        assert torch.allclose(g_scaled * alpha, g_plain, rtol=1e-4, atol=1e-5 * g_plain.abs().max().item())


def test_the_shared_projection_gets_gradient_from_both_towers(tiny_clip):
    model = model_with_random_adapters(tiny_clip)
    shared = model.learner.shared_adapter["9"][0].weight
    image, label = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])

    def shared_grad(text_grad: bool, image_grad: bool) -> torch.Tensor:
        with torch.set_grad_enabled(text_grad):
            text = model.encode_text()
        hooks = AdapterHooks(model.learner, model.learner.visual_adapter, tiny_clip.visual.transformer.resblocks, True)
        with torch.set_grad_enabled(image_grad):
            feats = tiny_clip.encode_image(image, inject=hooks)
        logits = tiny_clip.logit_scale.exp() * F.normalize(feats, dim=-1) @ F.normalize(text, dim=-1).t()
        return torch.autograd.grad(F.cross_entropy(logits, label), shared)[0]

    from_text, from_image, total = shared_grad(True, False), shared_grad(False, True), shared_grad(True, True)
    assert from_text.abs().max() > 0 and from_image.abs().max() > 0
    assert torch.allclose(total, from_text + from_image, rtol=1e-4, atol=1e-6)


def test_eval_text_features_are_computed_once_and_again_when_the_weights_change(tiny_clip):
    model = model_with_random_adapters(tiny_clip)
    image = torch.randn(2, 3, 32, 32)
    model.learner.eval()
    calls = []
    encode = model.encode_text
    model.encode_text = lambda: calls.append(1) or encode()
    with torch.no_grad():
        first = model(image)
        assert torch.equal(model(image), first) and len(calls) == 1  # once within an evaluation
        state = {k: v + 0.5 for k, v in model.learner.state_dict().items() if k.startswith("text_adapter")}
        model.learner.load_state_dict(state, strict=False)
        after_load = model(image)
        assert not torch.equal(first, after_load) and len(calls) == 2
    model(image)  # with gradients (training): computed every time
    model(image)
    assert len(calls) == 4


def test_learnable_count_and_keys_at_vit_b16():
    """674,560 trainable tensors' elements (MMA's 0.675 M) in the 80 official checkpoint keys."""
    tokens = torch.zeros(2, 77, dtype=torch.long)
    with torch.device("meta"):
        learner = AdapterLearner(512, 768, 32, range(5, 13), 0.001, tokens, torch.empty(2, 77, 512))
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == 674_560
    keys = {k for k, _ in learner.named_parameters()}
    expected = set()
    for i in range(5, 13):
        for tower in ("text", "visual"):
            expected |= {f"{tower}_adapter.{i}.{m}.{p}" for m in ("down.0", "up") for p in ("weight", "bias")}
        expected |= {f"shared_adapter.{i}.0.weight", f"shared_adapter.{i}.0.bias"}
    assert len(keys) == 80 and keys == expected
    assert set(learner.state_dict()) - keys == set(MultiModalAdapter.REBUILT_KEYS)


@pytest.mark.parametrize(("config", "batch"), [("vit_b16_ep5", 16), ("vit_b16_ep5_imnet", 128)])
def test_published_schedule(config, batch):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(CONFIGS, f"{config}.yaml"))
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == batch and cfg.TRAINER.MMADAPTER.PREC == "amp"
    optim = build_optimizer(torch.nn.Linear(2, 2), cfg.OPTIM)
    sched = build_lr_scheduler(optim, cfg.OPTIM)
    lrs = []
    for _ in range(5):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    assert lrs == pytest.approx([0.0015, 0.0013568, 0.0009818, 0.0005182, 0.0001432], abs=1e-7)
    assert optim.param_groups[0]["momentum"] == 0.9 and optim.param_groups[0]["weight_decay"] == 5e-4


# Regenerate: python -m tools.parity MultiModalAdapter --scenario seeded --write-pins
# Printed by the OFFICIAL implementation (github.com/ZjjConan/Multi-Modal-Adapter @ 547ee34,
# trainers/mmadapter.py on upstream Dassl, CPU, fp32) on exactly the setup of the test below:
# its build (one CLIP construction, then the text, visual and shared adapter sets), three SGD steps of its
# forward_backward, then its eval-mode forward and two trained weights. Our run matched it bit for bit;
# the tolerances only absorb other CPUs' rounding.
OFFICIAL = {
    "losses": [2.1568257808685303, 1.6106300354003906, 1.875753402709961],
    "logits0": [-1.9027, -1.81443, -1.59136, -2.07355, -0.27591],
    "logits5": [-1.67747, -1.36898, -1.43953, -1.6484, -0.38319],
    "shared12_w00": 0.2702425420284271,
    "text5_up_b0": -0.006612731143832207,
}


def test_seeded_run_reproduces_the_official_implementation(tmp_path):
    torch.save(seeded_state_dict(), tmp_path / "tiny.pt")
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["TRAINER.NAME", "MultiModalAdapter", "DATASET.NAME", "DescribableTextures"])
    cfg.merge_from_list(["INPUT.SIZE", (32, 32), "MODEL.BACKBONE.PATH", str(tmp_path / "tiny.pt")])
    cfg.merge_from_list(["OPTIM.NAME", "sgd", "OPTIM.LR", 0.05, "OPTIM.MAX_EPOCH", 5, "OPTIM.LR_SCHEDULER", "cosine"])
    cfg.TRAINER.MMADAPTER.update(
        {"TEXT_CTX_INIT": "a photo of a", "ADAPTER_START": 5, "ADAPTER_END": 12, "ADAPTER_DIM": 32}
    )
    cfg.TRAINER.MMADAPTER.update({"ADAPTER_SCALE": 0.001, "PREC": "fp32"})
    classnames = ["red_apple", "dog", "cat", "house", "tree"]

    cfg.freeze()
    torch.manual_seed(7)
    t = without_data(MultiModalAdapter, classnames)(cfg)  # the reference run fed fixed tensors
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 4, 3, 32, 32, generator=g)
    labels = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]])
    t.set_model_mode("train")
    t.num_batches = 100
    losses = []
    for t.batch_idx in range(3):
        losses.append(t.forward_backward({"img": images[t.batch_idx], "label": labels[t.batch_idx]})["loss"])
    t.set_model_mode("eval")
    with torch.no_grad():
        out = t.model(torch.randn(6, 3, 32, 32, generator=g))
    state = t.model.learner.state_dict()
    assert losses == pytest.approx(OFFICIAL["losses"], rel=1e-5)
    assert out[0].tolist() == pytest.approx(OFFICIAL["logits0"], abs=1e-4)
    assert out[5].tolist() == pytest.approx(OFFICIAL["logits5"], abs=1e-4)
    assert state["shared_adapter.12.0.weight"][0, 0].item() == pytest.approx(OFFICIAL["shared12_w00"], rel=1e-5)
    assert state["text_adapter.5.up.bias"][0].item() == pytest.approx(OFFICIAL["text5_up_b0"], rel=1e-4)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["TRAINER.MMADAPTER.ADAPTER_END", "13"], "ADAPTER_END=13, but the CLIP backbone has 12 layers"),
        (["TRAINER.MMADAPTER.ADAPTER_START", "9", "TRAINER.MMADAPTER.ADAPTER_END", "8"], "ADAPTER_START <= "),
        (["TRAINER.MMADAPTER.ADAPTER_SCALE", "0.0"], "ADAPTER_SCALE must not be 0"),
        (["TRAINER.MMADAPTER.ADAPTER_DIM", "64"], "ADAPTER_DIM=64 equals a tower's width"),
    ],
)
def test_config_errors_are_one_line(tmp_path, opts, message, tiny_clip):
    torch.save(tiny_clip.state_dict(), tmp_path / "tiny.pt")
    root = make_dataset("dtd", str(tmp_path / "data"), n_classes=2, n_train=2, n_val=1, n_test=2)
    cfg = mma_cfg()
    cfg.merge_from_list(["TRAINER.NAME", "MultiModalAdapter", "DATASET.NAME", "DescribableTextures"])
    cfg.merge_from_list(["DATASET.ROOT", osp.dirname(root), "INPUT.SIZE", (32, 32), "DATALOADER.NUM_WORKERS", 0])
    cfg.merge_from_list(["MODEL.BACKBONE.PATH", str(tmp_path / "tiny.pt"), "OUTPUT_DIR", str(tmp_path / "o"), *opts])
    cfg.freeze()
    with pytest.raises(ConfigError, match=re.escape(message)):
        MultiModalAdapter(cfg)


def test_train_py_base_then_new_classes(tmp_path, tiny_clip):
    """The official base-to-novel commands on a synthetic DTD: train on base, test on new from --load-epoch."""
    torch.save(tiny_clip.state_dict(), tmp_path / "tiny.pt")
    make_dataset("dtd", str(tmp_path / "data"), n_classes=4, n_train=4, n_val=1, n_test=2)
    common = ["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "MultiModalAdapter",
              "--dataset-config-file", osp.join(REPO, "configs", "datasets", "dtd.yaml"),
              "--config-file", osp.join(CONFIGS, "vit_b16_ep5.yaml")]  # fmt: skip
    opts = ["DATASET.NUM_SHOTS", "2", "MODEL.BACKBONE.PATH", str(tmp_path / "tiny.pt"), "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "OPTIM.MAX_EPOCH", "2",
            "TRAIN.PRINT_FREQ", "1", "TEST.PER_CLASS_RESULT", "True"]  # fmt: skip
    train = subprocess.run(
        [sys.executable, "train.py", *common, "--output-dir", str(tmp_path / "base"), *opts,
         "DATASET.SUBSAMPLE_CLASSES", "base"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    log = (tmp_path / "base" / "log.txt").read_text()
    assert "Learnable parameters: 75,520" in log  # 8 layers x (2 x (64*32+32 + 32*64+64) + 32*32+32)
    steps = re.findall(r"epoch \[(\d)/2\] batch \[\d/2\] .* loss \S+ \(\S+\) lr (\S+)", log)
    assert [lr for _, lr in steps] == ["1.5000e-03", "7.5000e-04", "7.5000e-04", "0.0000e+00"]
    assert "acc " not in log.split("Finish training")[0].split("epoch [1/2]")[1]  # the official logs the loss only
    assert osp.isfile(tmp_path / "base" / "adapter_learner" / "model.pth.tar-2")
    # the new classes from the saved epoch, as base2new_test.sh (--eval-only --load-epoch 2), in process
    cfg = mma_cfg()
    cfg.merge_from_file(osp.join(REPO, "configs", "datasets", "dtd.yaml"))
    cfg.merge_from_list(["TRAINER.NAME", "MultiModalAdapter", "DATASET.ROOT", str(tmp_path / "data"), *opts])
    cfg.merge_from_list(["DATASET.SUBSAMPLE_CLASSES", "new", "OUTPUT_DIR", str(tmp_path / "new")])
    cfg.freeze()
    trainer = build_trainer(cfg)
    trainer.load_model(str(tmp_path / "base"), epoch=2)
    saved = torch.load(tmp_path / "base" / "adapter_learner" / "model.pth.tar-2", weights_only=False)["state_dict"]
    loaded = trainer.model.learner.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items() if k not in MultiModalAdapter.REBUILT_KEYS)
    assert trainer.dm.dataset.classnames == ["braided", "bubbly"]
    assert loaded["token_embedding"].shape[0] == 2 and not torch.equal(
        loaded["tokenized_prompts"], saved["tokenized_prompts"]
    )
    assert 0 <= trainer.test() <= 100
