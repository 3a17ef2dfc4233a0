"""KgCoOp: a seeded run against numbers of the official implementation, its config node, its checkpoints."""

from __future__ import annotations

import pytest
import torch
from tiny import seeded_state_dict, tiny_clip_config, without_data

from clip.model import CLIP
from dassl.config import get_cfg_default
from trainers.base import ConfigError
from trainers.config import extend_cfg
from trainers.coop import official
from trainers.coop.coop import CoOp
from trainers.coop.kgcoop import KgCoOp, build_kgcoop

CLASSNAMES = ["banded", "blotchy", "braided", "bubbly", "chequered"]

# Produced by the OFFICIAL KgCoOp (github htyao89/KgCoOp @ c43ccc3, trainers/kgcoop.py on upstream Dassl,
# CPU, fp32, its teacher CLIP in fp16 as the official fp32 runs have it) on exactly the setup below: same tiny
# CLIP, DTD templates, seed 7 before the trainer is built, the three batches drawn from the global generator
# after the build (so its build-time draws are checked too), then its model_inference on two more images.
# Per step: loss, acc, lr after the step. Regenerate each entry with the command above it (tools/parity,
# recipe "steps"; --write-pins prints the entry).
OFFICIAL = {
    # official CTX_INIT True (any truthy value means "a photo of a"), N_CTX 16 ignored
    # python -m tools.parity KgCoOp --scenario seeded_init_words --write-pins
    "init_words": {
        "steps": [[2.4120545387268066, 50.0, 0.01],
            [2.4598231315612793, 25.0, 0.005], [2.084280014038086, 25.0, 0.005]],
        "logits": [[-2.95314, -1.97551, -2.79132, -2.48638, -3.00071],
            [-3.6862, -3.32814, -3.40756, -3.47667, -3.51265]],
    },
    # official CTX_INIT False, N_CTX 4: random context, drawn between the first CLIP and the unused modules
    # python -m tools.parity KgCoOp --scenario seeded_random --write-pins
    "random": {
        "steps": [[3.707655429840088, 50.0, 0.01],
            [2.6853082180023193, 25.0, 0.005], [2.478093385696411, 25.0, 0.005]],
        "logits": [[-3.80987, -3.0022, -3.72731, -3.62746, -3.59549],
            [-4.19242, -3.79215, -4.07339, -4.02642, -3.87594]],
    },
}  # fmt: skip


FixedClasses = without_data(KgCoOp, CLASSNAMES)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("kgcoop") / "tiny.pt"
    torch.save(seeded_state_dict(), path)
    return str(path)


def make_trainer(tiny_path: str, *opts) -> FixedClasses:
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["TRAINER.NAME", "KgCoOp", "DATASET.NAME", "DescribableTextures", "INPUT.SIZE", (32, 32)])
    cfg.merge_from_list(["MODEL.BACKBONE.PATH", tiny_path, "OPTIM.NAME", "sgd", "OPTIM.LR", 0.01])
    cfg.merge_from_list(["OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 2])
    cfg.merge_from_list(["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.W", 8.0, *opts])
    cfg.freeze()
    torch.manual_seed(7)
    return FixedClasses(cfg)


@pytest.mark.parametrize(
    "setting, opts",
    [
        ("init_words", ["TRAINER.COOP.CTX_INIT", "an image of", "TRAINER.COOP.N_CTX", 16]),
        ("random", ["TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", 4]),
    ],
)
def test_seeded_run_reproduces_the_official_implementation(tiny_path, setting, opts):
    t = make_trainer(tiny_path, *opts)
    assert t.model.learner.ctx.shape == (4, 64)
    images = torch.randn(3, 4, 3, 32, 32)
    labels = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]])
    t.set_model_mode("train")
    t.num_batches, t.epoch = 2, 0
    steps = []
    for i in range(3):
        t.batch_idx = i % 2
        summary = t.forward_backward({"img": images[i], "label": labels[i]})
        steps.append([summary["loss"], summary["acc"], t.get_current_lr()])
    t.set_model_mode("eval")
    with torch.no_grad():
        logits = t.model_inference(torch.randn(2, 3, 32, 32))
    expected = OFFICIAL[setting]
    # Bit for bit on this machine; the tolerance only absorbs other CPUs' rounding.
    assert [s[0] for s in steps] == pytest.approx([s[0] for s in expected["steps"]], rel=1e-5)
    assert [s[1:] for s in steps] == [s[1:] for s in expected["steps"]]
    assert logits.flatten().tolist() == pytest.approx(sum(expected["logits"], []), abs=1e-4)


def test_kgcoop_shares_coops_node_and_adds_w():
    assert KgCoOp.NODE == CoOp.NODE == "COOP"
    assert KgCoOp.DEFAULTS == {**CoOp.DEFAULTS, "W": 1.0}
    cfg = get_cfg_default()
    # The union of the node's methods (TCP's and ProVP's too): a KgCoOp YAML file and a CoOp one both merge.
    extend_cfg(cfg)
    assert {**CoOp.DEFAULTS, "W": 1.0}.items() <= dict(cfg.TRAINER.COOP).items()


def test_official_checkpoint_loads_and_a_foreign_one_is_refused(tiny_path):
    t = make_trainer(tiny_path, "TRAINER.COOP.CTX_INIT", "a photo of a")
    learner = t.model.learner
    ctx = torch.randn_like(learner.ctx)
    official = {  # the official layout: unused frozen modules, token buffers of other classes
        "ctx": ctx,
        "bias_vectors": torch.zeros(1, 512),
        "meta_net.linear1.weight": torch.zeros(512, 512),
        "meta_net.linear1.bias": torch.zeros(512),
        "token_prefix": torch.zeros(3, 1, 64),
        "token_suffix": torch.zeros(3, 72, 64),
    }
    loaded = t.learner_state(learner, official, "official.pth")
    assert torch.equal(loaded["ctx"], ctx)
    assert torch.equal(loaded["token_suffix"], learner.token_suffix)  # rebuilt from this run's classes
    with pytest.raises(ConfigError, match=r"missing keys \['ctx'\]"):
        t.learner_state(learner, {"prompt_embeddings": ctx}, "other.pth")


def test_class_token_position_other_than_end_is_refused(tiny_path):
    with pytest.raises(ConfigError, match="CLASS_TOKEN_POSITION 'middle'.*end only"):
        make_trainer(tiny_path, "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle")


def test_resuming_from_an_official_folder_keeps_ctx_and_its_momentum(tiny_path):
    t = make_trainer(tiny_path, "TRAINER.COOP.CTX_INIT", "a photo of a")
    ctx = torch.randn_like(t.model.learner.ctx)
    momentum = torch.randn_like(ctx)
    group = {"lr": 0.002, "momentum": 0.9, "dampening": 0, "weight_decay": 5e-4, "nesterov": False}
    official = {  # upstream Dassl's file: one group over ctx, bias_vectors, meta_net weight and bias
        "state_dict": {"ctx": ctx, "bias_vectors": torch.zeros(1, 512), "token_prefix": torch.zeros(3, 1, 64),
                       "token_suffix": torch.zeros(3, 72, 64), "meta_net.linear1.weight": torch.zeros(512, 512),
                       "meta_net.linear1.bias": torch.zeros(512)},
        "optimizer": {"state": {0: {"momentum_buffer": momentum}}, "param_groups": [{**group, "params": [0, 1, 2, 3]}]},
        "epoch": 2,
    }  # fmt: skip
    adapted = t.adapt_checkpoint("prompt_learner", official, "official.pth")
    t.model.learner.load_state_dict(adapted["state_dict"])
    t.optim.load_state_dict(adapted["optimizer"])
    assert torch.equal(t.model.learner.ctx, ctx)
    assert torch.equal(t.optim.state[t.model.learner.ctx]["momentum_buffer"], momentum)


def test_the_plain_factory_draws_only_the_context_the_trainer_replays_the_rest(tiny_path):
    """build_kgcoop draws the random context and nothing else; the trainer path draws, after it, what the
    official build draws (its seeded pins above depend on that)."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["DATASET.NAME", "DescribableTextures", "TRAINER.COOP.N_CTX", 4])
    clip_model = CLIP(tiny_clip_config()).float()
    torch.manual_seed(11)
    model = build_kgcoop(cfg, CLASSNAMES, clip_model)
    after_factory = torch.get_rng_state()
    torch.manual_seed(11)
    ctx = torch.empty(4, 64).normal_(std=0.02)  # the one tensor the model draws and keeps
    assert torch.equal(torch.get_rng_state(), after_factory)
    assert torch.equal(model.learner.ctx, ctx)
    official.replay_kgcoop_build(clip_model, cfg.TRAINER.COOP)
    assert not torch.equal(torch.get_rng_state(), after_factory)
