"""tools.inspect and tools/text_tokens.py: which learned text tokens each method has, where they enter the text
encoder, the words nearest to them, and the per-class accuracy of a run beside zero-shot CLIP's.

The nearest-word checks plant a known vector in a learner (a word's embedding, or its hidden state after
the tokens' number of blocks, computed here with CLIP's own transformer) and read the word back at
distance 0: the wrong table, or the wrong depth, gives another word or a distance far from 0.
"""
from __future__ import annotations

import csv
import json

import pytest
import torch
from test_predict import evaluation, trained_run
from test_trainer_contract import TRAINERS, build

from clip.model import CLIP
from clip.tokenizer import default_tokenizer
from tools import inspect as inspect_tool
from tools.text_tokens import learned_text_tokens, nearest_words

WORDS = ["dog", "photo", "texture", "red", "car"]


@pytest.fixture(scope="module")
def setup(tiny_clip, tmp_path_factory) -> tuple[str, str]:

    from datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("inspect")
    make_dataset("dtd", str(root / "data"), n_classes=4, n_train=4, n_val=2, n_test=3)
    return tiny_clip, str(root / "data")


def word_ids() -> list[int]:
    ids = [default_tokenizer().encode(w) for w in WORDS]
    assert all(len(i) == 1 for i in ids)  # one token each
    return [i[0] for i in ids]


def vocabulary() -> torch.Tensor:
    """A 600-id vocabulary holding the planted words (the full 49408 is slow through 11 blocks on a CPU)."""
    return torch.tensor(sorted(set(range(0, 49408, 83)) | set(word_ids())))


def hidden_state(clip_model: CLIP, token_id: int, depth: int) -> torch.Tensor:
    """The word's state at position 1 of "<SOS> word" after ``depth`` text blocks."""
    prompt = torch.tensor([[default_tokenizer().bot_id, token_id]])
    x = clip_model.embed_text(prompt)
    if depth:
        x = clip_model.transformer(x, causal=True, stop=depth)
    return x[1, 0].float()


def clip_of(trainer) -> CLIP:
    return next(m for m in trainer.model.modules() if isinstance(m, CLIP))


def expected_depths(name: str, cfg) -> list[int]:
    """Where each method's text tokens enter, from its published design (not from tools/text_tokens.py)."""
    node = cfg.TRAINER
    if name in ("CoOp", "CoCoOp", "KgCoOp", "TCP"):  # TCP's class-aware tokens are computed, not learned tensors
        return [0]
    if name in ("IVLP", "PromptSRC"):  # context at the input, deep prompts before blocks 2..depth
        return list(range(node[clip_trainer(name).NODE].PROMPT_DEPTH_TEXT))
    if name == "MaPLe":
        return list(range(node.MAPLE.PROMPT_DEPTH))
    if name in ("MMRL", "MMRLpp"):  # before each 1-based REP_LAYER
        return [layer - 1 for layer in node[name].REP_LAYERS]
    if name in ("Meta_B2N", "Meta_DG"):  # one slice per prompted layer, the first with the word embeddings
        return list(range(node.META.LAYERS))
    return []  # VPT (image prompts), adapters, the linear probe, zero-shot CLIP


def clip_trainer(name: str):
    from trainers.config import clip_trainers

    return clip_trainers()[name]


@pytest.mark.parametrize("name", TRAINERS)
def test_every_method_s_text_tokens_and_their_depth(name, setup, tmp_path):
    t = build(name, setup, str(tmp_path / "run"))
    rep_layers = t.settings.get("REP_LAYERS", []) if t.NODE else []
    sets = learned_text_tokens(t.model.learner, t.dm.dataset.classnames, rep_layers)
    assert [s.depth for s in sets] == expected_depths(name, t.cfg)
    width = clip_of(t).ln_final.weight.shape[0]
    assert all(s.vectors.dim() == 2 and s.vectors.shape[1] == width and len(s.labels) == len(s.vectors) for s in sets)


def test_context_vectors_read_back_as_the_words_they_were_set_to(setup, tmp_path):
    t = build("CoOp", setup, str(tmp_path / "run"))
    clip_model = clip_of(t)
    with torch.no_grad():
        t.model.learner.ctx.copy_(clip_model.token_embedding.weight[word_ids()[:4]])
    sets = learned_text_tokens(t.model.learner, t.dm.dataset.classnames)
    words = nearest_words(clip_model, sets, topk=2, show=False)  # the whole vocabulary: depth 0 is one table
    assert [token[0][0] for token in words[0]] == WORDS[:4]
    assert all(token[0][1] < 1e-5 < token[1][1] for token in words[0])


def test_class_specific_contexts_are_labelled_by_class(setup, tmp_path):
    t = build("CoOp", setup, str(tmp_path / "run"), ["TRAINER.COOP.CSC", "True", "TRAINER.COOP.CTX_INIT", ""])
    names = list(t.dm.dataset.classnames)
    (s,) = learned_text_tokens(t.model.learner, names)
    n_ctx = t.cfg.TRAINER.COOP.N_CTX
    assert s.labels[:2] == [f"{names[0]} 1", f"{names[0]} 2"] and len(s.labels) == len(names) * n_ctx
    torch.testing.assert_close(s.vectors[n_ctx], t.model.learner.ctx[1, 0].float())


@pytest.mark.parametrize("name, key, depth", [
    ("IVLP", "text_encoder.transformer.resblocks.3.VPT_shallow", 3),
    ("MaPLe", "prompt_learner.compound_prompts_text.2", 3),
])  # fmt: skip
def test_deep_prompts_are_compared_after_their_blocks(name, key, depth, setup, tmp_path):
    t = build(name, setup, str(tmp_path / "run"))
    clip_model = clip_of(t)
    target = word_ids()[0]
    with torch.no_grad():
        t.model.learner.state_dict()[key][0].copy_(hidden_state(clip_model, target, depth))
    sets = {s.name: s for s in learned_text_tokens(t.model.learner, t.dm.dataset.classnames)}
    planted = sets[key]
    assert planted.depth == depth
    (words,) = nearest_words(clip_model, [planted], topk=1, vocabulary=vocabulary(), show=False)
    assert words[0][0][0] == WORDS[0] and words[0][0][1] < 1e-4
    # The same vector among the word embeddings is not that word: the depth matters.
    planted.depth = 0
    (at_input,) = nearest_words(clip_model, [planted], topk=1, vocabulary=vocabulary(), show=False)
    assert at_input[0][0][1] > 1e-2


@pytest.mark.parametrize("name", ["MMRL", "MMRLpp"])
def test_representation_tokens_through_the_text_projection(name, setup, tmp_path):
    t = build(name, setup, str(tmp_path / "run"))
    clip_model = clip_of(t)
    layers = list(t.settings.REP_LAYERS)
    rep = t.model.learner.representation_learner
    with torch.no_grad():
        rep.compound_rep_tokens.zero_()  # F_t(R) is then the bias alone: plant a word there, one per layer
        biases = [p for n, p in rep.named_parameters() if "r2tproj" in n and n.endswith("bias")]
        assert len(biases) == len(layers)
        for layer, bias, target in zip(layers, biases, [word_ids()[i % len(WORDS)] for i in range(len(layers))]):
            bias.copy_(hidden_state(clip_model, target, layer - 1))
    sets = learned_text_tokens(t.model.learner, t.dm.dataset.classnames, layers)
    assert [s.depth for s in sets] == [layer - 1 for layer in layers]
    words = nearest_words(clip_model, sets, topk=1, vocabulary=vocabulary(), show=False)
    for i, per_token in enumerate(words):
        assert {token[0][0] for token in per_token} == {WORDS[i % len(WORDS)]}
        assert all(token[0][1] < 1e-4 for token in per_token)


def test_inspect_a_run(setup, tmp_path, capsys, monkeypatch):
    """Settings, nearest words, and per-class accuracy equal to the run's metrics.json and to zero-shot CLIP's
    own evaluation of the same images; without matplotlib, the CSV and one line naming the extra."""
    run = tmp_path / "run"
    trained_run("CoOp", setup, run)
    inspect_tool.main([str(run), "--topk", "2", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert f"Run: {run}" in out and "method CoOp, dataset DescribableTextures, task B2N, classes base" in out
    assert "TRAINER.COOP: CLASS_TOKEN_POSITION end, CSC False" in out
    assert "  ctx (4 tokens, with the word embeddings)" in out and len([ln for ln in out.splitlines()
                                                                         if ln.startswith("    ")]) == 4  # fmt: skip
    with open(tmp_path / "out" / "per_class_accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    per_class = json.loads((run / "metrics.json").read_text())["per_class"]
    assert [(r["class"], float(r["trained_acc"])) for r in rows] == [(c["classname"], round(c["acc"], 2))
                                                                     for c in per_class]  # fmt: skip
    zs = build("ZeroshotCLIP", setup, str(tmp_path / "zs"))
    _, probs, labels = evaluation(zs)
    right = probs.argmax(dim=-1) == labels
    expected = [100.0 * right[labels == k].float().mean().item() for k in range(len(rows))]
    assert [float(r["zero_shot_acc"]) for r in rows] == [round(e, 2) for e in expected]
    assert (tmp_path / "out" / "per_class_accuracy.png").read_bytes().startswith(b"\x89PNG")

    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib now fails
    inspect_tool.main([str(run), "--out", str(tmp_path / "bare")])
    assert inspect_tool.PLOT_HINT in capsys.readouterr().out
    assert (tmp_path / "bare" / "per_class_accuracy.csv").is_file()
    assert not (tmp_path / "bare" / "per_class_accuracy.png").exists()


def test_methods_without_text_tokens_say_so(setup, tmp_path, capsys):
    run = tmp_path / "run"
    trained_run("VPT", setup, run)
    inspect_tool.main([str(run), "--no-accuracy"])
    assert "VPT learns no text tokens: no nearest words to show" in capsys.readouterr().out
    assert not (run / "inspect").exists()


def test_shown_classes_keep_the_largest_losses_and_gains():
    rows = [inspect_tool.ClassAccuracy(f"c{i:02d}", 10, float(i), 50.0) for i in range(100)]
    shown = inspect_tool.shown_classes(rows, limit=10)
    assert [r.name for r in shown] == ["c00", "c01", "c02", "c03", "c04", "c95", "c96", "c97", "c98", "c99"]
    assert inspect_tool.shown_classes(rows[:7], limit=10) == rows[:7]
