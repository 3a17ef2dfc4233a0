"""ResNet CLIPs (RN50 ... RN50x64): the image tower, loading, the replayed construction, the methods that run
on them and the ones that refuse them, and seeded runs pinned to the official CoOp code."""

from __future__ import annotations

import hashlib
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from recorded_run import recorded_train
from tiny import tiny_resnet_config, tiny_resnet_state_dict

import clip
from clip import clip as clip_api
from clip.model import CLIP, RESNET, VIT, CLIPConfig, build_model, config_from_state_dict
from clip.resnet import AttentionPool2d, Bottleneck, ModifiedResNet
from clip.tokenizer import tokenize
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from datasets.synthetic import make_dataset
from tools.protocols.settings import ProtocolError, setting  # what the scripts and the grid plan from
from trainers.base import ConfigError
from trainers.config import clip_trainers, extend_cfg
from trainers.replay import replay_clip_construction

REPO = Path(__file__).resolve().parents[1]

TINY = tiny_resnet_config()
# OpenAI's five ResNet CLIPs, as their checkpoints' shapes give them (embed_dim, resolution, blocks per stage,
# width; text width and heads; all have 12 text blocks, 77 positions, a 49408-token vocabulary).
PUBLISHED = {
    "RN50": CLIPConfig(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN101": CLIPConfig(512, 224, (3, 4, 23, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN50x4": CLIPConfig(640, 288, (4, 6, 10, 6), 80, None, 77, 49408, 640, 10, 12),
    "RN50x16": CLIPConfig(768, 384, (6, 8, 18, 8), 96, None, 77, 49408, 768, 12, 12),
    "RN50x64": CLIPConfig(1024, 448, (3, 15, 36, 10), 128, None, 77, 49408, 1024, 16, 12),
}


@pytest.fixture(scope="module")
def tiny() -> CLIP:
    return build_model(tiny_resnet_state_dict(0)).float()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# --- the image tower -------------------------------------------------------------------------------------


def openai_resnet_keys(layers: tuple[int, ...]) -> set[str]:
    """OpenAI's image-tower key names: stem, blocks (a shortcut projection in each stage's first), pooling."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {f"visual.conv{i}.weight" for i in (1, 2, 3)} | {f"visual.bn{i}.{k}" for i in (1, 2, 3) for k in bn}
    for stage, n in enumerate(layers, start=1):
        for j in range(n):
            block = f"visual.layer{stage}.{j}"
            keys |= {f"{block}.conv{i}.weight" for i in (1, 2, 3)}
            keys |= {f"{block}.bn{i}.{k}" for i in (1, 2, 3) for k in bn}
            if j == 0:
                keys |= {f"{block}.downsample.0.weight"} | {f"{block}.downsample.1.{k}" for k in bn}
    keys |= {"visual.attnpool.positional_embedding"}
    keys |= {f"visual.attnpool.{p}_proj.{k}" for p in "qkvc" for k in ("weight", "bias")}
    return keys


def test_state_dict_has_openai_keys_and_the_architecture_is_read_back():
    torch.manual_seed(0)
    sd = CLIP(TINY).state_dict()
    visual = {k for k in sd if k.startswith("visual.")}
    assert visual == openai_resnet_keys(TINY.vision_layers)
    assert sd["visual.attnpool.positional_embedding"].shape == (2, 256)  # 32 px: a 1 x 1 map, plus the mean
    assert sd["visual.attnpool.c_proj.weight"].shape == (64, 256)
    assert config_from_state_dict(sd) == TINY


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_shapes_round_trip(name):
    """The five published architectures, built without memory (meta tensors): OpenAI's tensor shapes."""
    with torch.device("meta"):
        sd = CLIP(PUBLISHED[name]).state_dict()
    assert config_from_state_dict(sd) == PUBLISHED[name]
    assert {k for k in sd if k.startswith("visual.")} == openai_resnet_keys(PUBLISHED[name].vision_layers)
    if name == "RN50":  # shapes of OpenAI's RN50.pt; 102,007,137 parameters, as openai/CLIP's model.py builds it
        assert sd["visual.attnpool.positional_embedding"].shape == (50, 2048)
        assert sd["visual.layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
        assert sd["text_projection"].shape == (512, 1024)
        assert sum(v.numel() for k, v in sd.items() if "running" not in k and "batches" not in k) == 102_007_137
    assert PUBLISHED[name].vision_heads == PUBLISHED[name].vision_width // 2  # 64 dimensions per head


def test_config_checks():
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_resnet_config(image_resolution=48)
    with pytest.raises(ValueError, match="even"):
        tiny_resnet_config(vision_width=7)
    with pytest.raises(ValueError, match="4 stages"):
        tiny_resnet_config(vision_layers=(1, 1, 1))
    assert tiny_resnet_config(vision_layers=[2, 1, 1, 1]).vision_layers == (2, 1, 1, 1)  # from JSON / YAML
    assert TINY.family == RESNET and PUBLISHED["RN50"].family == RESNET


def test_features_at_32_px_depend_on_the_image(tiny, images):
    with torch.no_grad():
        features = tiny.encode_image(images)
    assert features.shape == (5, 64)
    cosine = F.normalize(features, dim=-1) @ F.normalize(features, dim=-1).t()
    assert cosine[~torch.eye(5, dtype=torch.bool)].max() < 0.99  # the world's weights reach every image


def reference_pool(pool: AttentionPool2d, x: torch.Tensor) -> torch.Tensor:
    """The pooling written out: the mean as the one query, softmax(q k^T / sqrt(d)) v per head, c_proj."""
    tokens = torch.cat([x.mean(dim=(2, 3))[:, None], x.flatten(2).transpose(1, 2)], dim=1) + pool.positional_embedding
    q, k, v = pool.q_proj(tokens[:, :1]), pool.k_proj(tokens), pool.v_proj(tokens)
    heads, d = pool.num_heads, q.shape[-1] // pool.num_heads
    q, k, v = (t.unflatten(-1, (heads, d)).transpose(1, 2) for t in (q, k, v))
    attended = ((q @ k.transpose(-1, -2)) / d**0.5).softmax(-1) @ v
    return pool.c_proj(attended.transpose(1, 2).flatten(2))[:, 0]


@pytest.mark.parametrize("all_queries", [False, True])
def test_attention_pool_is_one_query_over_the_mean_and_every_position(all_queries):
    torch.manual_seed(0)
    pool = AttentionPool2d(grid=3, embed_dim=128, num_heads=2, output_dim=32).eval()
    pool.all_queries = all_queries
    x = torch.randn(4, 128, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(pool(x), reference_pool(pool, x), rtol=1e-5, atol=1e-6)


def test_openai_init_starts_each_block_as_its_shortcut():
    """OpenAI's init zeroes each block's last BatchNorm scale: a fresh block without a shortcut projection
    passes its (non-negative) input through, one with it gives relu(projection of the pooled input)."""
    torch.manual_seed(0)
    visual = CLIP(TINY).visual.eval()
    x = torch.rand(2, 32, 8, 8)
    with torch.no_grad():
        assert torch.equal(visual.layer1[1](x), x)
        first = visual.layer2[0]
        assert torch.equal(first(x), F.relu(first.downsample(F.avg_pool2d(x, 2))))


def test_strided_block_pools_before_its_last_convolution():
    torch.manual_seed(0)
    block = Bottleneck(8, 4, stride=2).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        h = F.relu(block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x))))))
        expected = F.relu(block.bn3(block.conv3(F.avg_pool2d(h, 2))) + block.downsample(F.avg_pool2d(x, 2)))
        assert torch.equal(block(x), expected)
    assert block(x).shape == (1, 16, 3, 3)


def test_build_model_keeps_openai_fp16_layout(tiny):
    sd = tiny_resnet_state_dict(0)
    model = build_model({**sd, "input_resolution": torch.tensor(32)})
    assert not model.training and model.dtype == torch.float16
    loaded = model.state_dict()
    for key, value in sd.items():
        half = key.endswith(("conv1.weight", "conv2.weight", "conv3.weight", "downsample.0.weight"))
        half |= key.startswith("visual.attnpool.") and key.endswith(("proj.weight", "proj.bias"))
        half |= bool(re.search(r"\.(attn|mlp)\.", key)) or key == "text_projection"
        assert loaded[key].dtype == (torch.float16 if half else value.dtype), key  # BatchNorm stays fp32
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


def test_encode_image_hooks_need_a_vit(tiny, images):
    with pytest.raises(TypeError, match="ResNet image tower"):
        tiny.encode_image(images, inject=lambda i, x: x)


def test_exact_pools_from_every_query(images):
    """``exact`` (as built): the pooling of OpenAI's archived code and the official methods' copy (every query);
    False: OpenAI's current code (one query). The same features up to float rounding; set on the CLIP, it
    reaches the pooling, however the CLIP is built."""
    model = build_model(tiny_resnet_state_dict(0)).float()
    assert model.exact and model.visual.attnpool.all_queries
    with torch.no_grad():
        exact = model.encode_image(images)
        model.exact = False
        fast = model.encode_image(images)
    assert not model.visual.attnpool.all_queries
    assert not torch.equal(fast, exact)  # another op order: the flag reaches the computation
    torch.testing.assert_close(fast, exact, rtol=1e-5, atol=1e-6)
    assert build_model(tiny_resnet_state_dict(0), exact=False).visual.attnpool.all_queries is False


# --- files and OpenAI's API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The tiny ResNet CLIP as an OpenAI-style TorchScript archive (with their three hyper-parameter buffers)."""
    model = CLIP(TINY)
    model.load_state_dict(tiny_resnet_state_dict(0))
    for name, value in {"input_resolution": 32, "context_length": 77, "vocab_size": 49408}.items():
        model.__dict__.pop(name, None)
        model.register_buffer(name, torch.tensor(value))
    path = tmp_path_factory.mktemp("rn") / "RN-T.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model.eval(), (torch.randn(1, 3, 32, 32), tokenize("a cat"))).save(str(path))
    return path


def test_torchscript_archive_is_read_without_running_it(archive, tiny, images, monkeypatch):
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load must not be used"))
    weights = clip_api.load_state_dict_from_file(archive)
    sd = tiny_resnet_state_dict(0)
    assert all(torch.equal(weights[k], v) for k, v in sd.items())  # BatchNorm statistics included
    model, preprocess = clip.load(str(archive))
    assert isinstance(model.visual, ModifiedResNet) and model.dtype == torch.float32
    assert preprocess(Image.new("RGB", (50, 40))).shape == (3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), tiny.encode_image(images))


def test_resnet_names_download_and_load_as_openai_s(archive, tmp_path, monkeypatch):
    assert clip.available_models()[:5] == ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64"]
    assert [clip.model_family(n) for n in ("RN50x64", "ViT-B/16", "my.pt")] == [RESNET, VIT, None]
    payload = archive.read_bytes()
    folder = tmp_path / "server" / hashlib.sha256(payload).hexdigest()
    folder.mkdir(parents=True)
    (folder / "RN50.pt").write_bytes(payload)
    monkeypatch.setitem(clip_api._MODELS, "RN50", (folder / "RN50.pt").as_uri())
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "cache"))
    model, _ = clip.load("RN50")
    assert isinstance(model.visual, ModifiedResNet) and (tmp_path / "cache" / "RN50.pt").is_file()


# --- the replayed construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "RN50", "RN50x4"])
def test_replay_draws_what_a_construction_draws(name):
    """The official trainers build OpenAI's CLIP; a run here replays those draws from the shapes alone."""
    config = TINY if name == "tiny" else PUBLISHED[name]
    torch.manual_seed(0)
    model = CLIP(config)
    built = torch.get_rng_state()
    torch.manual_seed(0)
    replay_clip_construction(model)
    assert torch.equal(torch.get_rng_state(), built)


def test_replay_follows_the_shapes():
    """One more block, or a wider pooling, draws more: the replay reads the model it is given."""
    states = []
    for config in (TINY, tiny_resnet_config(vision_layers=(2, 1, 2, 1)), tiny_resnet_config(embed_dim=32)):
        torch.manual_seed(0)
        model = CLIP(config)
        torch.manual_seed(0)
        replay_clip_construction(model)
        states.append(torch.get_rng_state())
    assert not torch.equal(states[0], states[1]) and not torch.equal(states[0], states[2])


def test_vit_sites_are_refused_on_a_resnet():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="ResNet"):
        replay_clip_construction(CLIP(TINY), site=lambda tower, j: None)


# --- methods: which run on a ResNet, and seeded runs pinned to the official code ---------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The parity world: the tiny ResNet CLIP file and the synthetic DTD."""
    root = tmp_path_factory.mktemp("rn_world")
    torch.save(tiny_resnet_state_dict(0), root / "tiny_rn.pt")
    make_dataset("dtd", str(root / "data"), n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0)
    return root


COMMON = ["DATALOADER.NUM_WORKERS", "0", "INPUT.SIZE", "(32, 32)", "TRAIN.PRINT_FREQ", "1"]
COMMON += ["TEST.PER_CLASS_RESULT", "True", "DATALOADER.TEST.BATCH_SIZE", "8"]
COOP = ["DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2"]
COOP += ["TRAINER.COOP.PREC", "fp32"]
B2N = ["DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2"]
B2N += ["TRAINER.COOP.PREC", "fp32", "OPTIM.LR", "0.05"]
COCOOP = ["DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "2", "TRAINER.COCOOP.PREC", "fp32"]
COCOOP += ["MODEL.BACKBONE.NAME", "RN50", "OPTIM.LR", "0.05"]
KGCOOP = ["DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2"]
KGCOOP += ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.W", "8.0", "OPTIM.LR", "0.02"]
# name: (trainer, config file, flags, options). The official runs read CoOp's own files: CoOp/<file> for
# ZeroshotCLIP(2) too (its scripts/coop/zeroshot.sh), and CoCoOp's ViT file with MODEL.BACKBONE.NAME RN50
# (CoCoOp publishes no RN50 file; its files differ from an RN50 one in the backbone name only).
RUNS = {
    "coop_end": ("CoOp", "CoOp/rn50_ep50", [], ["TRAINER.COOP.N_CTX", "16", "OPTIM.LR", "0.05", *COOP]),
    "coop_csc": ("CoOp", "CoOp/rn50_ep50", [], ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "True",
                                                  "OPTIM.LR", "0.05", *COOP]),
    "coop_middle": ("CoOp", "CoOp/rn50_ep100", [], ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION",
                                                    "middle", "OPTIM.LR", "0.05", *COOP]),
    "coop_front": ("CoOp", "CoOp/rn101", [], ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION", "front",
                                              "OPTIM.LR", "0.05", *COOP]),
    "coop_ctxv1_base": ("CoOp", "CoOp/rn50_ctxv1", [], [*B2N, "DATASET.SUBSAMPLE_CLASSES", "base"]),
    "coop_ctxv1_new": ("CoOp", "CoOp/rn50_ctxv1", ["coop_ctxv1_base"], [*B2N, "DATASET.SUBSAMPLE_CLASSES", "new"]),
    "cocoop_base": ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1", [],
                    [*COCOOP, "DATASET.SUBSAMPLE_CLASSES", "base"]),
    "cocoop_new": ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1", ["cocoop_base"],
                   [*COCOOP, "DATASET.SUBSAMPLE_CLASSES", "new"]),
    "kgcoop_base": ("KgCoOp", "KgCoOp/rn50_ep100", [], [*KGCOOP, "DATASET.SUBSAMPLE_CLASSES", "base"]),
    "kgcoop_new": ("KgCoOp", "KgCoOp/rn50_ep100", ["kgcoop_base"], [*KGCOOP, "DATASET.SUBSAMPLE_CLASSES", "new"]),
    "zs": ("ZeroshotCLIP", "ZeroshotCLIP/rn50", ["--eval-only"], []),
    "zs2": ("ZeroshotCLIP2", "ZeroshotCLIP2/rn101", ["--eval-only"], []),
}  # fmt: skip

# From the official runs: KaiyangZhou/CoOp @ ff61507 (CoOp, CoCoOp, the zero-shot trainers) and htyao89/KgCoOp
# @ c43ccc3 (KgCoOp, its rn50_ep100 file) on upstream KaiyangZhou/Dassl.pytorch @ c61a1b5, CPU, fp32, one thread
# as this suite (torch 2.14.1, x86-64), on the world above, with the command lines of RUNS (official zero-shot
# runs read CoOp/<file>, as CoOp's scripts/coop/zeroshot.sh), run side by side with ours (EXACT True) by
# tools.parity, whose shims are listed in docs/parity.md. Each entry is printed again by the command above it
# (the tool's scenario of the same options on this world). Per step: the loss at full precision (the float the
# official forward_backward returned), the accuracy and the lr after the step; per class: correct of 3; per test
# image (in test-loader order): the predicted class. Side by side, every test logit was equal bit for bit too.
WARMUP = [1e-05] * 3 + [0.05] * 4 + [0.025]
OFFICIAL = {
    # python -m tools.parity CoOp --scenario rn50_end --write-pins
    "coop_end": {
        "loss": [2.2230584621429443, 2.0097131729125977, 2.2001779079437256, 2.10288143157959, 2.310939311981201,
                 2.138572931289673, 2.0287349224090576, 2.0023555755615234],
        "acc": [25.0, 0.0, 0.0, 0.0, 0.0, 0.0, 50.0, 0.0], "lr": WARMUP, "correct": [0, 0, 0, 3, 0, 0, 0, 0],
        "predicted": [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 6, 1, 6, 2, 2, 3, 2, 2, 2, 3, 2, 3],
    },
    # python -m tools.parity CoOp --scenario rn50_csc --write-pins
    "coop_csc": {
        "loss": [1.7382442951202393, 2.5453577041625977, 2.1835265159606934, 2.0698928833007812, 1.7539390325546265,
                 1.37149977684021, 1.7922987937927246, 1.1640571355819702],
        "acc": [25.0, 0.0, 0.0, 0.0, 50.0, 50.0, 50.0, 50.0], "lr": WARMUP, "correct": [0, 3, 0, 3, 3, 3, 2, 2],
        "predicted": [1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 7, 7, 7, 1],
    },
    # python -m tools.parity CoOp --scenario rn50_middle --write-pins
    "coop_middle": {
        "loss": [2.0427513122558594, 2.1093077659606934, 1.9077298641204834, 2.0893630981445312, 1.9246838092803955,
                 2.088453531265259, 2.2625339031219482, 2.0740151405334473],
        "acc": [0.0, 0.0, 50.0, 0.0, 25.0, 25.0, 0.0, 50.0], "lr": WARMUP, "correct": [0, 3, 0, 0, 0, 0, 1, 0],
        "predicted": [1, 1, 1, 1, 1, 1, 1, 1, 1, 5, 5, 5, 3, 3, 5, 4, 4, 4, 4, 4, 6, 6, 6, 6],
    },
    # python -m tools.parity CoOp --scenario rn101_front --write-pins
    "coop_front": {
        "loss": [2.237358570098877, 2.2973055839538574, 2.3829312324523926, 1.8126373291015625, 1.869763970375061,
                 2.1188926696777344, 2.4284863471984863, 1.9785734415054321],
        "acc": [25.0, 25.0, 0.0, 25.0, 25.0, 0.0, 0.0, 50.0], "lr": WARMUP, "correct": [0, 0, 0, 0, 0, 0, 3, 0],
        "predicted": [4, 1, 4, 4, 4, 4, 1, 1, 1, 1, 1, 1, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6],
    },
    # python -m tools.parity CoOp --scenario rn50_ctxv1_base_to_new --write-pins
    "coop_ctxv1_base": {
        "loss": [3.0110275745391846, 1.9454518556594849, 2.03132963180542, 1.36851167678833, 1.3543381690979004,
                 1.3881127834320068, 1.436987042427063, 1.453381061553955],
        "acc": [0.0, 25.0, 25.0, 50.0, 50.0, 50.0, 0.0, 25.0], "lr": WARMUP, "correct": [0, 0, 1, 0],
        "predicted": [3, 3, 3, 3, 3, 3, 3, 3, 2, 0, 0, 0],
    },
    # python -m tools.parity CoOp --scenario rn50_ctxv1_base_to_new --write-pins
    "coop_ctxv1_new": {
        "loss": [], "acc": [], "lr": [], "correct": [0, 0, 0, 1],
        "predicted": [3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 3],
    },
    # python -m tools.parity CoCoOp --scenario rn50_base_to_new --write-pins
    "cocoop_base": {
        "loss": [0.8665968179702759, 1.6212279796600342, 1.6291518211364746, 1.3067822456359863, 1.731165885925293,
                 0.9221113920211792, 1.283019781112671, 1.7066314220428467, 1.2698309421539307, 1.47991144657135,
                 1.4936861991882324, 1.0069950819015503, 1.5660849809646606, 1.4712560176849365, 1.4490188360214233,
                 1.4243648052215576],
        "acc": [None] * 16,  # the official CoCoOp reports the loss only
        "lr": [1e-05] * 7 + [0.05] * 8 + [0.025], "correct": [0, 0, 0, 3],
        "predicted": [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3],
    },
    # python -m tools.parity CoCoOp --scenario rn50_base_to_new --write-pins
    "cocoop_new": {
        "loss": [], "acc": [], "lr": [], "correct": [0, 0, 0, 1],
        "predicted": [3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 3],
    },
    # python -m tools.parity KgCoOp --scenario rn50_base_to_new_tests --write-pins
    "kgcoop_base": {
        "loss": [2.5916953086853027, 2.785327196121216, 2.5558464527130127, 2.625638008117676, 3.142308235168457,
                 5.7589521408081055, 4.386518955230713, 3.4086532592773438],
        "acc": [25.0, 25.0, 25.0, 25.0, 0.0, 50.0, 25.0, 50.0], "lr": [1e-05] * 3 + [0.02] * 4 + [0.01],
        "correct": [3, 0, 1, 0], "predicted": [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0],
    },
    # python -m tools.parity KgCoOp --scenario rn50_base_to_new_tests --write-pins
    "kgcoop_new": {
        "loss": [], "acc": [], "lr": [], "correct": [0, 0, 0, 1],
        "predicted": [3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 3],
    },
    # python -m tools.parity ZeroshotCLIP --scenario rn50_tests --write-pins
    "zs": {
        "loss": [], "acc": [], "lr": [], "correct": [0, 0, 0, 0, 0, 0, 0, 0],
        "predicted": [3, 3, 3, 3, 3, 3, 0, 3, 0, 0, 0, 0, 6, 6, 6, 3, 2, 7, 0, 0, 0, 0, 0, 0],
    },
    # python -m tools.parity ZeroshotCLIP2 --scenario rn101_tests --write-pins
    "zs2": {
        "loss": [], "acc": [], "lr": [], "correct": [3, 0, 0, 0, 0, 0, 0, 0],
        "predicted": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7, 0, 6, 7, 7, 5, 5, 1, 0],
    },
}  # fmt: skip
def run(world: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """train.py in-process on the world, as the official run; every step at full precision, per-class counts."""
    trainer, config, flags, opts = RUNS[name]
    argv = ["--root", str(world / "data"), "--seed", "1", "--trainer", trainer, "--output-dir", str(world / name)]
    argv += ["--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml")]
    argv += ["--config-file", str(REPO / f"configs/trainers/{config}.yaml")]
    if flags and flags[0] != "--eval-only":
        argv += ["--model-dir", str(world / flags[0]), "--load-epoch", "2", "--eval-only"]
    else:
        argv += flags
    opts = [*opts, *COMMON, "MODEL.BACKBONE.PATH", str(world / "tiny_rn.pt"), "EXACT", "True"]
    return recorded_train([*argv, *opts], world / name, monkeypatch)


@pytest.mark.parametrize("names", [("coop_end",), ("coop_csc",), ("coop_middle",), ("coop_front",),
                                   ("coop_ctxv1_base", "coop_ctxv1_new"), ("cocoop_base", "cocoop_new"),
                                   ("kgcoop_base", "kgcoop_new"), ("zs",), ("zs2",)], ids="+".join)  # fmt: skip
def test_seeded_runs_equal_the_official_code_bit_for_bit(world, names, monkeypatch):
    for name in names:  # a base-to-novel pair: the new classes are tested with the base run's checkpoint
        assert run(world, name, monkeypatch) == OFFICIAL[name], name


def test_a_frozen_resnet_keeps_its_batchnorm_statistics(world, tmp_path):
    """As CoOp's CLIP (built in eval mode, never registered for training): BatchNorm uses and keeps its running
    statistics during training; only the context moves."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs/datasets/dtd.yaml"))
    cfg.merge_from_file(str(REPO / "configs/trainers/CoOp/rn50.yaml"))
    cfg.merge_from_list(["TRAINER.NAME", "CoOp", "DATASET.ROOT", str(world / "data"), "OUTPUT_DIR", str(tmp_path),
                         "MODEL.BACKBONE.PATH", str(world / "tiny_rn.pt"), *COOP, *COMMON])  # fmt: skip
    t = build_trainer(cfg)
    visual = t.model.clip.visual
    before = {k: v.clone() for k, v in visual.state_dict().items()}
    t.train()
    assert not any(m.training for m in visual.modules())
    assert all(torch.equal(before[k], v) for k, v in visual.state_dict().items())


VIT_ONLY = sorted(n for n, cls in clip_trainers().items() if RESNET not in cls.BACKBONES)


def test_the_coop_family_runs_on_resnets_and_the_others_do_not():
    supported = {n for n in clip_trainers() if n not in VIT_ONLY}  # and any later method that declares it
    coop_family = {"CoCoOp", "CoOp", "KgCoOp", "LinearProbeCLIP", "ZeroshotCLIP", "ZeroshotCLIP2"}
    assert coop_family | {"TCP", "CLIP_Adapter"} <= supported
    assert {"MMRL", "MMRLpp", "MaPLe", "IVLP", "VPT", "PromptSRC", "ProVP", "MultiModalAdapter"} <= set(VIT_ONLY)


@pytest.mark.parametrize("name", VIT_ONLY)
def test_a_vit_only_method_refuses_a_resnet_name_before_any_work(name, tmp_path):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["TRAINER.NAME", name, "MODEL.BACKBONE.NAME", "RN50", "DATASET.NAME", "DescribableTextures",
                         "DATASET.ROOT", str(tmp_path / "no-data"), "OUTPUT_DIR", str(tmp_path / "out")])  # fmt: skip
    with pytest.raises(ConfigError) as error:
        build_trainer(cfg)  # reading the data (missing) or the weights would fail otherwise
    assert str(error.value) == (
        f"MODEL.BACKBONE.NAME RN50 is a ResNet CLIP, but {name} runs on ViT backbones only "
        "(ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px): choose one of those"
    )


def test_a_resnet_file_for_a_vit_only_method_is_one_error_line(world, tmp_path):
    """The issue's case: a ViT config with MODEL.BACKBONE.PATH an RN50 file; found once the file is read."""
    import subprocess

    cmd = [sys.executable, str(REPO / "train.py"), "--root", str(world / "data"), "--trainer", "MMRL",
           "--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml"),
           "--config-file", str(REPO / "configs/trainers/MMRL/vit_b16.yaml"), "--output-dir", str(tmp_path / "out"),
           "MODEL.BACKBONE.PATH", str(world / "tiny_rn.pt"), "DATALOADER.NUM_WORKERS", "0"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: MODEL.BACKBONE.PATH {world / 'tiny_rn.pt'} is a ResNet CLIP, but MMRL runs on ViT backbones only "
        "(ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px): choose one of those"
    )


def test_weight_errors_give_the_fitting_hint(tmp_path, monkeypatch):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    from trainers.base import load_clip

    cfg.MODEL.BACKBONE.NAME = "RN51"
    with pytest.raises(ConfigError, match=r"^MODEL.BACKBONE.NAME 'RN51' is not a published CLIP \(RN50, RN101") as e:
        load_clip(cfg)
    assert "network" not in str(e.value)

    def offline(url, root=None):
        raise RuntimeError(f"could not download {url} (no route); put the file at /c/RN50.pt or pass its local path")

    monkeypatch.setattr(clip_api, "_download", offline)
    cfg.MODEL.BACKBONE.NAME = "RN50"
    with pytest.raises(ConfigError, match=r"of RN50: could not download .*Without network access, download RN50's"):
        load_clip(cfg)
    cfg.MODEL.BACKBONE.PATH = str(tmp_path / "RN50.pt")
    with pytest.raises(ConfigError, match=r"PATH .*RN50.pt does not exist: fix the path, or leave it empty"):
        load_clip(cfg)


# --- configs and protocols -------------------------------------------------------------------------------


def rn_configs() -> list[Path]:
    return sorted(p for p in (REPO / "configs/trainers").glob("*/rn*.yaml"))


@pytest.mark.parametrize("path", rn_configs(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_resnet_config_files_name_a_resnet_for_a_method_that_runs_on_it(path):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(path))
    assert cfg.MODEL.BACKBONE.NAME == {"rn50": "RN50", "rn101": "RN101"}[path.stem.split("_")[0]]
    assert RESNET in clip_trainers()[path.parent.name].BACKBONES


@pytest.mark.parametrize("rn, vit", [("rn50", "vit_b16"), ("rn50_ep50", "vit_b16_ep50"),
                                     ("rn50_ep100", "vit_b16_ep100"), ("rn50_ctxv1", "vit_b16_ctxv1"),
                                     ("rn50_ep50_ctxv1", "vit_b16_ep50_ctxv1"), ("rn101", "vit_b16"),
                                     ("rn101_ep50", "vit_b16_ep50")])  # fmt: skip
def test_coop_resnet_files_are_the_vit_files_at_another_backbone(rn, vit):
    """As in the official repository: each RN file holds its ViT-B/16 namesake's values but the backbone."""
    folder = REPO / "configs/trainers/CoOp"
    rn_values, vit_values = (yaml.safe_load((folder / f"{n}.yaml").read_text()) for n in (rn, vit))
    assert rn_values.pop("MODEL") == {"BACKBONE": {"NAME": rn.split("_")[0].upper()}}
    vit_values.pop("MODEL")
    assert rn_values == vit_values


def test_protocols_pick_a_backbone_s_files(monkeypatch):
    assert setting("CoOp", "few_shot", "caltech101", 1, backbone="rn50").config == "rn50_ep50"  # CoOp's README, 1 shot
    assert [setting("CoOp", "few_shot", "dtd", k, backbone="rn50").config for k in (2, 4, 8, 16)] == [
        "rn50_ep100", "rn50_ep100", "rn50", "rn50"]  # fmt: skip
    assert setting("CoOp", "few_shot", "imagenet", 4, backbone="rn101").config == "rn101_ep50"
    assert setting("CoOp", "base2new", "imagenet", backbone="rn50").config == "rn50_ep50_ctxv1"
    assert setting("ZeroshotCLIP2", "few_shot", "dtd", backbone="rn101").config == "rn101"
    assert setting("LinearProbeCLIP", "few_shot", "dtd", 16, backbone="rn50").config == "rn50_val"
    assert setting("KgCoOp", "base2new", "dtd", backbone="rn50").config == "rn50_ep100"
    monkeypatch.setenv("BACKBONE", "rn50")  # what the scripts and the grid pass
    assert setting("CoOp", "few_shot", "dtd", 8).config == "rn50"
    with pytest.raises(ProtocolError, match="MMRL has no rn50 files"):
        setting("MMRL", "base2new", "dtd")
    with pytest.raises(ProtocolError, match="no rn101 file for the setting of vit_b16_ep100"):
        setting("CoOp", "few_shot", "dtd", 2, backbone="rn101")
    monkeypatch.delenv("BACKBONE")
    assert setting("CoOp", "few_shot", "dtd", 8).config == "vit_b16"


def test_a_malformed_backbones_table_names_its_line(tmp_path):
    from tools.protocols.protocols_file import FileError, read_protocols

    path = tmp_path / "protocols.yaml"
    path.write_text("few_shot: {config: vit_b16}\nbackbones:\n  rn50: vit_b16\n")
    with pytest.raises(FileError, match=r"protocols.yaml:2: backbones must map each backbone"):
        read_protocols(str(path))
    path.write_text("few_shot: {config: vit_b16}\nbackbones:\n  rn50: {vit_b16: rn50}\n")
    assert read_protocols(str(path))["backbones"] == {"rn50": {"vit_b16": "rn50"}}
