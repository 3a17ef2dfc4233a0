"""Weight files (state dict, checkpoint, TorchScript archive), download cache and OpenAI's public API."""

import copy
import hashlib
import os
import pickle
import urllib.request
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny import tiny_clip_config

import clip
from clip import clip as clip_api
from clip.model import CLIP
from clip.tokenizer import tokenize

SMALL = tiny_clip_config(vision_layers=2, transformer_layers=2)
OPENAI_BUFFERS = {"input_resolution": 32, "context_length": 77, "vocab_size": 49408}


@pytest.fixture(scope="module")
def small() -> CLIP:
    torch.manual_seed(0)
    return CLIP(SMALL).eval()


@pytest.fixture(scope="module")
def files(small, tmp_path_factory) -> dict[str, Path]:
    """The same weights as a state dict, a trainer checkpoint and an OpenAI-style TorchScript archive."""
    root = tmp_path_factory.mktemp("weights")
    torch.save(small.state_dict(), root / "state_dict.pt")
    torch.save({"state_dict": small.state_dict(), "epoch": 3}, root / "checkpoint.pth.tar")
    # OpenAI's archives also carry these three hyper-parameters as buffers of the top module.
    scripted = copy.deepcopy(small)
    for name, value in OPENAI_BUFFERS.items():
        scripted.__dict__.pop(name, None)
        scripted.register_buffer(name, torch.tensor(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(scripted, (torch.randn(1, 3, 32, 32), tokenize("a cat")))
    traced.save(str(root / "ViT-T-8.pt"))
    return {"state_dict": root / "state_dict.pt", "checkpoint": root / "checkpoint.pth.tar", "jit": root / "ViT-T-8.pt"}


@pytest.fixture
def no_jit_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load must not be used")

    monkeypatch.setattr(torch.jit, "load", refuse)


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key


# --- reading weight files --------------------------------------------------------------------------------


def test_torchscript_archive_is_a_real_jit_file(files):
    with zipfile.ZipFile(files["jit"]) as archive:
        names = archive.namelist()
    assert "ViT-T-8/constants.pkl" in names and any(n.startswith("ViT-T-8/code/") for n in names)


@pytest.mark.parametrize("kind", ["state_dict", "checkpoint"])
def test_read_state_dict_files(small, files, kind):
    assert_same_tensors(clip_api.load_state_dict_from_file(files[kind]), small.state_dict())


def test_read_torchscript_archive_without_running_it(small, files, no_jit_load):
    weights = clip_api.load_state_dict_from_file(files["jit"])
    expected = {**small.state_dict(), **{k: torch.tensor(v) for k, v in OPENAI_BUFFERS.items()}}
    assert_same_tensors(weights, expected)


def test_load_gives_same_model_from_archive_and_state_dict(files, no_jit_load):
    from_jit, preprocess = clip.load(str(files["jit"]))
    from_sd, _ = clip_api.load(str(files["state_dict"]))
    assert from_jit.dtype == torch.float32  # cast to fp32 on CPU, as OpenAI's load
    assert_same_tensors(from_jit.state_dict(), from_sd.state_dict())
    image = preprocess(Image.new("RGB", (50, 40), color=(200, 30, 60)))
    assert image.shape == (3, 32, 32)
    text = tokenize(["a cat", "a dog"])
    with torch.no_grad():
        assert torch.equal(from_jit(image[None], text)[0], from_sd(image[None], text)[0])


def test_archive_with_foreign_code_is_refused(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(Payload(), protocol=2))
        archive.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        clip_api.load_state_dict_from_file(path)
    assert not marker.exists()


def test_load_errors():
    with pytest.raises(RuntimeError, match=r"available models = .*ViT-B/16"):
        clip.load("ViT-Nope/1")
    with pytest.raises(NotImplementedError, match="jit"):
        clip.load("ViT-B/16", jit=True)


def test_load_clip_state_dict_from_path(small, files, tmp_path):
    assert_same_tensors(clip_api.load_clip_state_dict("ViT-B/16", str(files["state_dict"])), small.state_dict())
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*MODEL\.BACKBONE\.PATH"):
        clip_api.load_clip_state_dict("ViT-B/16", str(missing))


# --- published models and the download cache -------------------------------------------------------------


def test_published_models():
    assert clip.available_models() == [
        "RN50",
        "RN101",
        "RN50x4",
        "RN50x16",
        "RN50x64",
        "ViT-B/32",
        "ViT-B/16",
        "ViT-L/14",
        "ViT-L/14@336px",
    ]
    assert clip_api._MODELS["ViT-B/16"] == (
        "https://openaipublic.azureedge.net/clip/models/"
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"
    )


def serve(tmp_path: Path, payload: bytes, digest: str, name: str = "model.pt") -> str:
    """A file:// URL laid out like OpenAI's: .../<sha256>/<name>."""
    folder = tmp_path / "server" / digest
    folder.mkdir(parents=True)
    (folder / name).write_bytes(payload)
    return (folder / name).as_uri()


def test_download_verifies_and_caches(tmp_path, monkeypatch):
    payload = b"weights" * 1000
    url = serve(tmp_path, payload, hashlib.sha256(payload).hexdigest())
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    path = clip_api._download(url)
    assert path == str(cache / "model.pt") and Path(path).read_bytes() == payload
    assert os.listdir(cache) == ["model.pt"]

    def offline(*args, **kwargs):
        raise AssertionError("a verified cached file must be reused")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert clip_api._download(url) == path


def test_corrupt_cached_file_is_replaced(tmp_path):
    payload = b"good weights"
    url = serve(tmp_path, payload, hashlib.sha256(payload).hexdigest())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.pt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="does not match"):
        path = clip_api._download(url, str(cache))
    assert Path(path).read_bytes() == payload


def test_download_with_wrong_checksum_fails_clearly(tmp_path):
    payload = b"not the published weights"
    expected = "0" * 64
    url = serve(tmp_path, payload, expected)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError) as error:
        clip_api._download(url, str(cache))
    message = str(error.value)
    assert expected in message and hashlib.sha256(payload).hexdigest() in message
    assert str(cache / "model.pt") in message and "local file path" in message
    assert os.listdir(cache) == []  # neither a bad cache entry nor a leftover temporary file


def test_load_by_name_downloads_into_the_cache(small, files, tmp_path, monkeypatch, no_jit_load):
    payload = files["jit"].read_bytes()
    url = serve(tmp_path, payload, hashlib.sha256(payload).hexdigest(), name="ViT-T-8.pt")
    monkeypatch.setitem(clip_api._MODELS, "ViT-T/8", url)
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "cache"))
    weights = clip_api.load_clip_state_dict("ViT-T/8")
    assert_same_tensors({k: weights[k] for k in small.state_dict()}, small.state_dict())
    model, _ = clip.load("ViT-T/8")
    assert isinstance(model, CLIP) and (tmp_path / "cache" / "ViT-T-8.pt").is_file()


def test_public_api_names():
    for name in ("tokenize", "load", "available_models", "_MODELS", "_download", "build_model"):
        assert hasattr(clip_api, name), name
    assert clip.load is clip_api.load and clip.tokenize is clip_api.tokenize
