"""MaskedMHAAdapter (Seputis et al.): the adapter's math against plain torch, what each mask lets
attend to what, the release's key layout, a seeded run pinned to the release's numbers, and train.py
with best-val selection and early stopping on a synthetic dataset."""

from __future__ import annotations

import math
import os.path as osp
import re
import sys

import pytest
import torch
import torch.nn.functional as F

import train
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from datasets.synthetic import make_dataset
from tests.tiny import seeded_state_dict, tiny_clip_config, without_data
from trainers.base import ConfigError
from trainers.config import extend_cfg
from trainers.masked_mha_adapter.masked_mha_adapter import MaskedAttentionAdapter, MaskedMHAAdapter, adapted_logits

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, "configs", "trainers", "MaskedMHAAdapter", "vit_b16.yaml")
INF = float("-inf")
# The release's module (dqmis/clip-mma, MaskedMultiheadAttentionDownsampled) at embed 512: key -> shape.
RELEASE_KEYS = {
    "downsampler.0.weight": (32, 512), "downsampler.0.bias": (32,),
    "downsampler.1.weight": (128, 32), "downsampler.1.bias": (128,),
    "mha.in_proj_weight": (384, 128), "mha.in_proj_bias": (384,),
    "mha.out_proj.weight": (128, 128), "mha.out_proj.bias": (128,),
    "upsampler.0.weight": (32, 128), "upsampler.0.bias": (32,),
    "upsampler.2.weight": (512, 32), "upsampler.2.bias": (512,),
}  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("data"))
    make_dataset("OxfordPets", root, n_classes=4, n_train=4, n_val=2, n_test=2)
    return root


def make_cfg(tiny_clip: str, root: str, opts: list | None = None):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(
        ["TRAINER.NAME", "MaskedMHAAdapter", "DATASET.NAME", "OxfordPets", "DATASET.ROOT", root,
         "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "INPUT.SIZE", (32, 32),
         "MODEL.BACKBONE.PATH", tiny_clip, "OUTPUT_DIR", osp.join(root, "out")] + (opts or [])
    )  # fmt: skip
    return cfg


def perturbed(adapter: MaskedAttentionAdapter, seed: int = 0) -> MaskedAttentionAdapter:
    """Weights moved off their init (zero biases would hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return adapter.eval()


def by_hand(adapter: MaskedAttentionAdapter, seq: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The two-linear adapter written out with plain ops: (outputs (L, B, D), head-averaged weights (B, L, L))."""
    p = dict(adapter.named_parameters())
    x = seq @ p["downsampler.0.weight"].T + p["downsampler.0.bias"]
    x = x @ p["downsampler.1.weight"].T + p["downsampler.1.bias"]
    q, k, v = (x @ p["mha.in_proj_weight"].T + p["mha.in_proj_bias"]).chunk(3, dim=-1)
    heads, width = adapter.heads, x.shape[-1]
    d = width // heads
    outs, weights = [], []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = (t[..., sl].permute(1, 0, 2) for t in (q, k, v))  # (B, L, d)
        w = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(d) + mask, dim=-1)
        weights.append(w)
        outs.append(w @ vh)
    x = torch.cat(outs, dim=-1).permute(1, 0, 2) @ p["mha.out_proj.weight"].T + p["mha.out_proj.bias"]
    x = F.gelu(x @ p["upsampler.0.weight"].T + p["upsampler.0.bias"])
    x = x @ p["upsampler.2.weight"].T + p["upsampler.2.bias"]
    return x, torch.stack(weights).mean(0)


# Two classes + one image: rows/columns are (text 1, text 2, image).
MASKS = {
    "additive": torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
    "cross_only": torch.tensor([[INF, INF, 0.0], [INF, INF, 0.0], [0.0, 0.0, INF]]),
    "none": torch.zeros(3, 3),
}


@pytest.mark.parametrize("mask", list(MASKS))
def test_two_class_logits_match_plain_torch(mask):
    torch.manual_seed(1)
    adapter = perturbed(MaskedAttentionAdapter(16, down_dim=8, bottleneck=4, heads=2, mask=mask))
    images = F.normalize(torch.randn(3, 16), dim=-1)
    texts = F.normalize(torch.randn(2, 16), dim=-1)
    scale = torch.tensor(math.log(100.0))
    with torch.no_grad():
        got = adapted_logits(adapter, images, texts, 0.2, scale)
        for b in range(3):
            seq = torch.cat([texts, images[b : b + 1]]).unsqueeze(1)
            out, _ = by_hand(adapter, seq, MASKS[mask])
            out = F.normalize(out[:, 0], dim=-1)
            image = F.normalize(0.8 * images[b] + 0.2 * out[2], dim=-1)
            for c in range(2):
                text = F.normalize(0.8 * texts[c] + 0.2 * out[c], dim=-1)
                assert got[b, c].item() == pytest.approx(100.0 * float(image @ text), abs=1e-4)


@pytest.mark.parametrize("mask", list(MASKS))
def test_attention_weights_follow_the_mask(mask):
    torch.manual_seed(2)
    adapter = perturbed(MaskedAttentionAdapter(16, down_dim=8, bottleneck=4, heads=2, mask=mask))
    seq = torch.randn(3, 5, 16)
    with torch.no_grad():
        out, weights = adapter(seq, return_weights=True)
        expected_out, expected_weights = by_hand(adapter, seq, MASKS[mask])
    assert torch.allclose(out, expected_out, atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-6)
    if mask == "cross_only":
        assert torch.equal(weights[:, :2, 2], torch.ones(5, 2))  # each text attends to the image only
        assert torch.equal(weights[:, 2, 2], torch.zeros(5))  # the image not to itself
    else:
        assert bool((weights > 0).all())  # the release's mask blocks nothing


def test_which_outputs_a_text_feature_reaches():
    """cross_only: a text's output depends on the image only (the same for every class); with the
    release's additive mask, or none, changing one text changes every output."""
    torch.manual_seed(3)
    seq = torch.randn(4, 2, 16)  # 3 texts + the image
    moved = seq.clone()
    moved[1] += 0.5
    changed = {}
    for mask in MASKS:
        adapter = perturbed(MaskedAttentionAdapter(16, down_dim=8, bottleneck=4, heads=2, mask=mask))
        with torch.no_grad():
            before, after = adapter(seq), adapter(moved)
        changed[mask] = [not torch.allclose(before[i], after[i], atol=1e-6) for i in range(4)]
        if mask == "cross_only":
            assert torch.allclose(before[0], before[1], atol=1e-6) and torch.allclose(before[0], before[2], atol=1e-6)
    assert changed["cross_only"] == [False, False, False, True]
    assert changed["additive"] == [True, True, True, True]
    assert changed["none"] == [True, True, True, True]


def test_release_key_layout_and_parameter_counts():
    adapter = MaskedAttentionAdapter(512)
    assert {k: tuple(v.shape) for k, v in adapter.state_dict().items()} == RELEASE_KEYS
    assert sum(p.numel() for p in adapter.parameters()) == sum(math.prod(s) for s in RELEASE_KEYS.values()) == 107712
    single = MaskedAttentionAdapter(512, single_linear=True)
    assert sorted(single.state_dict()) == sorted(
        ["downsampler.weight", "downsampler.bias", "upsampler.weight", "upsampler.bias"]
        + [k for k in RELEASE_KEYS if k.startswith("mha.")]
    )
    assert sum(p.numel() for p in single.parameters()) == 197760


def fixed_classes_trainer(cfg, classnames):
    return without_data(MaskedMHAAdapter, classnames)(cfg)


# From the release (dqmis/clip-mma @ 1287cb5, CLIPTransformerAdapterText and its Learner's Adam loop) on
# the same tiny CLIP, seed, images and classes, fp32 CPU.
# Regenerate: python -m tools.parity MaskedMHAAdapter --scenario seeded --write-pins
RELEASE = {
    "losses": [1.5553877353668213, 1.6336615085601807, 1.645810604095459],
    "accs": [50.0, 25.0, 0.0],
    "logits0": [0.5491582751274109, 0.5280983448028564, 0.42890381813049316, 0.38603052496910095, 0.3863099217414856],
    "logits5": [0.8780681490898132, 0.9536725282669067, 0.713543176651001, 0.7259525656700134, 0.8017643094062805],
    "predictions": [0, 1, 0, 4, 0, 1],
}


def test_seeded_run_reproduces_the_release(tmp_path):
    torch.save(seeded_state_dict(tiny_clip_config(embed_dim=512)), tmp_path / "tiny.pt")  # the release: embed 512
    cfg = make_cfg(str(tmp_path / "tiny.pt"), str(tmp_path), ["TRAINER.MASKED_MHA_ADAPTER.PREC", "fp32"])
    cfg.freeze()
    torch.manual_seed(7)
    t = fixed_classes_trainer(cfg, ["red_apple", "dog", "cat", "house", "tree"])
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 4, 3, 32, 32, generator=g)
    labels = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]])
    t.set_model_mode("train")
    t.num_batches = 100
    steps = []
    for t.batch_idx in range(3):
        steps.append(t.forward_backward({"img": images[t.batch_idx], "label": labels[t.batch_idx]}))
    t.set_model_mode("eval")
    with torch.no_grad():
        logits = t.model(torch.randn(6, 3, 32, 32, generator=g))
    assert [s["loss"] for s in steps] == pytest.approx(RELEASE["losses"], rel=1e-5)
    assert [s["acc"] for s in steps] == RELEASE["accs"]
    assert t.get_current_lr() == 5e-3  # constant
    assert logits[0].tolist() == pytest.approx(RELEASE["logits0"], rel=1e-5)
    assert logits[5].tolist() == pytest.approx(RELEASE["logits5"], rel=1e-5)
    assert logits.argmax(-1).tolist() == RELEASE["predictions"]


def test_blend_zero_is_zero_shot_clip_and_images_are_independent(tiny_clip, data_root):
    cfg = make_cfg(tiny_clip, data_root, ["TRAINER.MASKED_MHA_ADAPTER.BLEND", 0.0])
    t = build_trainer(cfg)
    model = t.model.eval()
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        image = F.normalize(model.clip.encode_image(images), dim=-1)
        text = F.normalize(model.clip.encode_text(model.tokenized_prompts), dim=-1)
        assert torch.allclose(logits, model.clip.logit_scale.exp() * image @ text.T, atol=1e-4)
        model.blend = 0.2
        batch = model(images)
        assert torch.allclose(model(images[3:4]), batch[3:4], atol=1e-5)  # images never see each other
        assert not torch.allclose(batch, logits, atol=1e-3)
        perm = torch.tensor([2, 0, 3, 1])  # the class list permuted: the columns follow (no positions)
        text = model.text_features()
        model.text_features = lambda: text[perm]
        assert torch.allclose(model(images), batch[:, perm], atol=1e-5)


def test_init_weights_takes_the_release_state_dict_and_rejects_others(tiny_clip, data_root, tmp_path):
    g = torch.Generator().manual_seed(4)
    width = tiny_clip_config().embed_dim  # the tiny CLIP: embed 64 instead of 512
    shapes = {k: tuple(width if d == 512 else d for d in s) for k, s in RELEASE_KEYS.items()}
    release = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    torch.save(release, tmp_path / "adapter.pt")
    t = build_trainer(make_cfg(tiny_clip, data_root, ["MODEL.INIT_WEIGHTS", str(tmp_path / "adapter.pt")]))
    state = t.model.learner.state_dict()
    assert all(torch.equal(state[k], v) for k, v in release.items())

    # The release's whole-model checkpoint (adapter under "adapter.", beside the frozen CLIP) via --model-dir.
    whole = {f"adapter.{k}": 2 * v for k, v in release.items()} | {"_clip.logit_scale": torch.tensor(4.6)}
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    torch.save({"state_dict": whole, "epoch": 3}, tmp_path / "run" / "adapter" / "model-best.pth.tar")
    t.load_model(str(tmp_path / "run"))
    assert all(torch.equal(t.model.learner.state_dict()[k], 2 * v) for k, v in release.items())

    del release["mha.in_proj_bias"]
    torch.save(release, tmp_path / "partial.pt")
    with pytest.raises(ConfigError, match=r"missing keys \['mha.in_proj_bias'\]"):
        build_trainer(make_cfg(tiny_clip, data_root, ["MODEL.INIT_WEIGHTS", str(tmp_path / "partial.pt")]))


@pytest.mark.parametrize(
    "opts, message",
    [
        (["TRAINER.MASKED_MHA_ADAPTER.MASK", "causal"], "MASK must be one of additive, cross_only, none"),
        (["TRAINER.MASKED_MHA_ADAPTER.HEADS", 3], "DOWN_DIM .128. must be divisible by"),
        (["TEST.FINAL_MODEL", "last_step"], "PATIENCE counts epochs without a better val accuracy"),
    ],
)
def test_bad_settings_fail_before_the_data_is_read(tiny_clip, tmp_path, opts, message):
    with pytest.raises(ConfigError, match=message):
        build_trainer(make_cfg(tiny_clip, str(tmp_path / "no_data"), opts))


def run_train(args: list[str]) -> str:
    """train.py in this process; returns its log."""
    train.main(train.build_parser().parse_args(args))
    sys.stdout.flush()  # the logger tees stdout into log.txt
    output_dir = args[args.index("--output-dir") + 1]
    return open(osp.join(output_dir, "log.txt")).read()


def test_train_py_keeps_the_best_val_model_and_stops_early(tiny_clip, data_root, tmp_path):
    out = str(tmp_path / "b2n")
    common = ["--root", data_root, "--seed", "1", "--trainer", "MaskedMHAAdapter",
              "--dataset-config-file", osp.join(REPO, "configs", "datasets", "oxford_pets.yaml"),
              "--config-file", CONFIG]  # fmt: skip
    small = ["MODEL.BACKBONE.PATH", tiny_clip, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
             "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATASET.NUM_SHOTS", "4"]  # fmt: skip
    schedule = ["OPTIM.MAX_EPOCH", "12", "OPTIM.LR", "0.05", "TRAINER.MASKED_MHA_ADAPTER.PATIENCE", "2"]
    log = run_train([*common, "--output-dir", out, *small, "DATASET.SUBSAMPLE_CLASSES", "base", *schedule])
    val = [float(a) for a in re.findall(r"\*val\* set.*?accuracy: ([\d.]+)%", log, re.S)]
    best = max(range(len(val)), key=lambda i: (val[i], -i)) + 1  # first epoch of the highest accuracy
    trained = len(re.findall(r"epoch \[\d+/12\] batch \[2/2\]", log))
    assert trained == len(val) == best + 2 < 12  # stopped 2 epochs after the best, not the last epoch tested
    assert "stopping early" in log
    assert re.search(rf'Loaded weights to adapter from "\S+model-best.pth.tar" \(epoch = {best}\)', log)

    # The new classes (other class names, no per-class tensor): the best adapter, as it was saved.
    new = str(tmp_path / "new")
    log = run_train([*common, "--output-dir", new, "--model-dir", out, "--eval-only", *small,
                     "DATASET.SUBSAMPLE_CLASSES", "new"])  # fmt: skip
    assert re.search(r"\*test\* set.*?total: 4\n", log, re.S)  # 2 new classes x 2 test images
    assert f"(epoch = {best})" in log
