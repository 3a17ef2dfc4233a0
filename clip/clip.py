"""OpenAI's public CLIP API (``load``, ``tokenize``, ``available_models``), so CoOp-family code ports over.

Every published model loads: the ResNets (RN50, RN101, RN50x4, RN50x16, RN50x64) and the ViTs.

Weights are read without running any pickled or TorchScript code: plain files go through
``torch.load(weights_only=True)``, OpenAI's TorchScript archives through a restricted unpickler that only
rebuilds tensors.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import urllib.request
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor
from tqdm import tqdm

from .model import CLIP, RESNET, VIT, build_model
from .tokenizer import tokenize

__all__ = [
    "available_models",
    "model_family",
    "build_model",
    "load",
    "load_clip_state_dict",
    "load_state_dict_from_file",
    "tokenize",
]

_URL_ROOT = "https://openaipublic.azureedge.net/clip/models"
_MODELS = {
    "RN50": f"{_URL_ROOT}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": f"{_URL_ROOT}/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": f"{_URL_ROOT}/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": f"{_URL_ROOT}/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": f"{_URL_ROOT}/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": f"{_URL_ROOT}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": f"{_URL_ROOT}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": f"{_URL_ROOT}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": f"{_URL_ROOT}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def available_models() -> list[str]:
    """Names accepted by ``load``."""
    return list(_MODELS)


def model_family(name: str) -> str | None:
    """"ResNet" or "ViT" for a published model name, None for any other name (its weights tell)."""
    if name not in _MODELS:
        return None
    return RESNET if name.startswith("RN") else VIT


def _cache_dir() -> str:
    return os.environ.get("CLIP_CACHE_DIR") or os.path.expanduser("~/.cache/clip")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, root: str | None = None) -> str:
    """Path of the cached file for ``url``, downloading it when absent or corrupt.

    The SHA256 is the URL's path segment before the file name. The download goes to a temporary file in
    the cache dir and is renamed into place only once verified, so an interrupted run leaves no bad cache.
    """
    root = root or _cache_dir()
    os.makedirs(root, exist_ok=True)
    expected = url.split("/")[-2]
    target = os.path.join(root, os.path.basename(url))
    if os.path.exists(target) and not os.path.isfile(target):
        raise RuntimeError(f"{target} exists and is not a regular file")
    if os.path.isfile(target):
        if _sha256(target) == expected:
            return target
        warnings.warn(f"{target} exists but its SHA256 does not match {expected}; downloading it again", stacklevel=2)

    fd, partial = tempfile.mkstemp(prefix=os.path.basename(url) + ".", suffix=".part", dir=root)
    try:
        digest = hashlib.sha256()
        try:
            source = urllib.request.urlopen(url)
        except OSError as e:
            raise RuntimeError(
                f"could not download {url} ({e}); put the file at {target} or pass its local path"
            ) from e
        with os.fdopen(fd, "wb") as out, source:
            size = source.headers.get("Content-Length")
            with tqdm(total=int(size) if size else None, unit="iB", unit_scale=True, unit_divisor=1024) as bar:
                while chunk := source.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        actual = digest.hexdigest()
        if actual != expected:
            raise RuntimeError(
                f"SHA256 mismatch for {url}: expected {expected}, got {actual}; the download was discarded "
                f"and {target} left unchanged. Delete {target} if it is a stale copy and retry, or download "
                "the weights yourself and pass the local file path instead of the model name."
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def _convert_image_to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def _transform(n_px: int) -> Compose:
    """CLIP's test-time preprocessing: bicubic resize of the short side, center crop, CLIP mean/std."""
    return Compose(
        [
            Resize(n_px, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(n_px),
            _convert_image_to_rgb,
            ToTensor(),
            Normalize(MEAN, STD),
        ]
    )


# TorchScript pickles name storages by their legacy typed-storage class.
_STORAGE_DTYPES = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ArchivedModule:
    """Stand-in for a ``__torch__.*`` scripted module class: it only keeps the pickled attribute state."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> torch.Tensor:
    return storage.as_strided(size, stride, offset)


def _first_argument(value: Any, *_: Any) -> Any:
    return value


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` allowing only tensors, storages and inert module stand-ins."""

    def __init__(self, data: bytes, read_record: Callable[[str], bytes]) -> None:
        super().__init__(io.BytesIO(data))
        self._read_record = read_record
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ArchivedModule
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle":  # typed-list and type-tag wrappers around plain values
            return _first_argument
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a TorchScript weights archive")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if key not in self._storages:
            data = bytearray(self._read_record(f"data/{key}"))
            storage = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
            if storage.numel() != numel:
                raise pickle.UnpicklingError(f"storage {key} holds {storage.numel()} elements, expected {numel}")
            self._storages[key] = storage
        return self._storages[key]


def _torchscript_root(archive: zipfile.ZipFile) -> str | None:
    """Top folder of a TorchScript archive (it has code/ and constants.pkl, unlike a ``torch.save`` zip)."""
    for name in archive.namelist():
        root, _, rest = name.partition("/")
        if rest == "constants.pkl" or rest.startswith("code/"):
            return root
    return None


def _flatten(obj: _ArchivedModule, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if not isinstance(obj.state, dict):
        return
    for name, value in obj.state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ArchivedModule):
            _flatten(value, f"{prefix}{name}.", out)


def _read_torchscript_weights(archive: zipfile.ZipFile, root: str) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archived module tree, keyed by dotted path like ``state_dict()``.

    TorchScript keeps only parameters, buffers and submodules as attributes (plain tensors become code
    constants), so this equals the scripted module's state dict.
    """
    names = set(archive.namelist())
    if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder").decode().strip() != "little":
        raise ValueError("big-endian TorchScript archives are not supported")
    unpickler = _WeightsUnpickler(archive.read(f"{root}/data.pkl"), lambda record: archive.read(f"{root}/{record}"))
    top = unpickler.load()
    if not isinstance(top, _ArchivedModule):
        raise ValueError(f"{archive.filename}: data.pkl does not hold a scripted module")
    weights: dict[str, torch.Tensor] = {}
    _flatten(top, "", weights)
    return weights


def load_state_dict_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights from a state dict file, a checkpoint dict with ``"state_dict"``, or an OpenAI TorchScript archive.

    Nothing in the file is executed: TorchScript archives are never loaded with ``torch.jit.load``.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            root = _torchscript_root(archive)
            if root is not None:
                return _read_torchscript_weights(archive, root)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def load(
    name: str, device: str | torch.device = "cpu", jit: bool = False, download_root: str | None = None
) -> tuple[CLIP, Compose]:
    """A CLIP model and its image preprocessing, from a model name (downloaded and cached) or a file path.

    The model is in eval mode with fp16 weights, except on CPU where it is cast to fp32 as OpenAI's ``load``.
    """
    if jit:
        raise NotImplementedError("jit=True is not supported: models are rebuilt from weights only; use jit=False")
    if name in _MODELS:
        path = _download(_MODELS[name], download_root)
    elif os.path.isfile(name):
        path = name
    else:
        raise RuntimeError(f"Model {name} not found; available models = {available_models()}")
    model = build_model(load_state_dict_from_file(path)).to(device)
    if str(device) == "cpu":
        model.float()
    return model, _transform(model.visual.input_resolution)


def load_clip_state_dict(backbone_name: str, path: str = "") -> dict[str, torch.Tensor]:
    """CLIP weights for trainers: from ``path`` (MODEL.BACKBONE.PATH) if given, else downloaded by name."""
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"CLIP weights file {path} (MODEL.BACKBONE.PATH) does not exist")
        return load_state_dict_from_file(path)
    if backbone_name not in _MODELS:
        raise RuntimeError(f"Model {backbone_name} not found; available models = {available_models()}")
    return load_state_dict_from_file(_download(_MODELS[backbone_name]))
