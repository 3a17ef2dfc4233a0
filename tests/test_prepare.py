"""datasets.prepare against a local HTTP server (127.0.0.1, started here): mirrors, fallbacks, checksums,
resumed downloads, manual steps, conversions, and --check on broken trees. Nothing touches the internet."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import datasets  # noqa: F401  (registers the datasets)
from datasets.download import http_download
from datasets.prepare import DOWNLOADED, FAILED, Options, main, prepare_one
from datasets.sources import DatasetSpec, FileSpec, Source
from datasets.synthetic import make_dataset
from tests.test_datasets import build


class Server:
    """Serves ``files`` (url path -> bytes) with HTTP Range support; records every request's path and Range."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def tar_of(tree: str, arcname: str, mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        tar.add(tree, arcname=arcname)
    return buf.getvalue()


def dtd_files(tmp_path) -> dict[str, bytes]:
    """dtd-r1.0.1.tar.gz (top folder dtd/ with images/ ...) and the split file, from the synthetic generator."""
    src = make_dataset("dtd", tmp_path / "src", size=8)
    split = open(os.path.join(src, "split_zhou_DescribableTextures.json"), "rb").read()
    os.remove(os.path.join(src, "split_zhou_DescribableTextures.json"))
    return {"dtd-r1.0.1.tar.gz": tar_of(src, "dtd"), "split_zhou_DescribableTextures.json": split}


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(["--quiet", *args])
    return rc, out.getvalue()


def test_mirror_downloads_extracts_and_is_idempotent(tmp_path, server):
    for name, body in dtd_files(tmp_path).items():
        server.files[f"/mirror/{name}"] = body
    root = str(tmp_path / "data")
    rc, out = run("--root", root, "--mirror", server.url + "/mirror", "--no-checksum", "dtd")
    assert rc == 0, out
    assert {"/mirror/dtd-r1.0.1.tar.gz", "/mirror/split_zhou_DescribableTextures.json"} <= set(server.paths())
    assert "DescribableTextures  downloaded" in out
    ddir = os.path.join(root, "dtd")
    assert sorted(os.listdir(ddir)) == ["images", "split_zhou_DescribableTextures.json"]  # archive gone, no temp
    assert len(build(root, "DescribableTextures").test) == 4 * 3

    server.requests.clear()
    rc, out = run("--root", root, "--mirror", server.url + "/mirror", "--no-checksum", "dtd")
    assert rc == 0 and server.requests == [] and "DescribableTextures  ready" in out


def test_mirror_file_with_wrong_checksum_is_rejected(tmp_path, server):
    """A repacked archive on a mirror differs from the published md5: refused unless --no-checksum."""
    for name, body in dtd_files(tmp_path).items():
        server.files[f"/m/{name}"] = body
    root = str(tmp_path / "data")
    rc, out = run("--root", root, "--mirror", server.url + "/m", "dtd")
    assert rc == 1 and "md5" in out and "expected fff73e5086ae6bdbea199a49dfb8a4c1" in out
    assert "DescribableTextures  failed" in out
    assert not [f for f in os.listdir(os.path.join(root, "dtd")) if f.startswith("dtd-r1.0.1")]  # nor a .part


def spec_for(tmp_path, server, urls: list[str], md5: str) -> tuple[DatasetSpec, bytes]:
    tree = tmp_path / "tree" / "pics" / "cls"
    tree.mkdir(parents=True)
    (tree / "a.jpg").write_bytes(os.urandom(3000))
    body = tar_of(str(tmp_path / "tree" / "pics"), "pics")
    server.files["/good/pics.tar.gz"] = body
    md5 = md5 or hashlib.md5(body).hexdigest()
    f = FileSpec("pics.tar.gz", tuple(Source(server.url + u) for u in urls), ("pics",), md5=md5, extract=True)
    return DatasetSpec("Pics", "pics", "pics", (f,), ("pics",)), body


def test_failing_source_falls_back_to_the_next(tmp_path, server):
    spec, _ = spec_for(tmp_path, server, ["/dead/pics.tar.gz", "/good/pics.tar.gz"], "")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        res = prepare_one(spec, Options(str(tmp_path / "data"), quiet=True))
    assert res.status == DOWNLOADED, res.details
    assert server.paths() == ["/dead/pics.tar.gz", "/good/pics.tar.gz"]
    assert "HTTP 404" in out.getvalue()
    assert os.path.isfile(tmp_path / "data" / "pics" / "pics" / "cls" / "a.jpg")


def test_bad_checksum_is_rejected_and_not_kept(tmp_path, server):
    spec, _ = spec_for(tmp_path, server, ["/good/pics.tar.gz"], "0" * 32)
    with contextlib.redirect_stdout(io.StringIO()):
        res = prepare_one(spec, Options(str(tmp_path / "data"), quiet=True))
    assert res.status == FAILED and "every source failed" in res.details[0] and "md5" in res.details[0]
    assert os.listdir(tmp_path / "data" / "pics") == []


def test_half_downloaded_part_is_resumed_with_a_range_request(tmp_path, server):
    spec, body = spec_for(tmp_path, server, ["/good/pics.tar.gz"], "")
    ddir = tmp_path / "data" / "pics"
    ddir.mkdir(parents=True)
    half = len(body) // 2
    (ddir / "pics.tar.gz.part").write_bytes(body[:half])
    with contextlib.redirect_stdout(io.StringIO()):
        res = prepare_one(spec, Options(str(tmp_path / "data"), quiet=True, keep_archives=True))
    assert res.status == DOWNLOADED, res.details
    assert server.requests == [("/good/pics.tar.gz", f"bytes={half}-")]
    assert (ddir / "pics.tar.gz").read_bytes() == body and not (ddir / "pics.tar.gz.part").exists()


def test_server_ignoring_range_restarts_the_file(tmp_path):
    """A host that answers 200 to a Range request sends the whole file: the part is overwritten, not appended."""
    body = os.urandom(5000)

    class Whole(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Whole)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    dest = str(tmp_path / "f.bin")
    open(dest + ".part", "wb").write(b"x" * 100)
    try:
        http_download(f"http://127.0.0.1:{httpd.server_address[1]}/f.bin", dest, quiet=True)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert open(dest + ".part", "rb").read() == body


def test_imagenet_prints_the_manual_step_and_the_others_continue(tmp_path, server):
    for name, body in dtd_files(tmp_path).items():
        server.files[f"/m/{name}"] = body
    server.files["/m/classnames.txt"] = b"n01440764 tench\n"
    root = str(tmp_path / "data")
    rc, out = run("--root", root, "--mirror", server.url + "/m", "--no-checksum", "imagenet", "dtd")
    assert rc == 1
    target = os.path.join(root, "imagenet", "ILSVRC2012_img_train.tar")
    assert "image-net.org/challenges/LSVRC/2012/2012-downloads.php" in out and f"put it at {target}" in out
    assert "ILSVRC2012_img_val.tar" in out
    table = out[out.index("dataset "):]
    assert "ImageNet             manual step needed" in table and "DescribableTextures  downloaded" in table
    assert os.path.isfile(os.path.join(root, "imagenet", "classnames.txt"))


def test_imagenet_archives_placed_by_hand_are_extracted_and_val_sorted(tmp_path, server):
    """The user drops the three ILSVRC files into imagenet/: train's per-class tars are unpacked and the
    flat val folder is sorted into wnid folders from the devkit (ground truth ids + meta.mat)."""
    scipy_io = pytest.importorskip("scipy.io")
    import numpy as np

    wnids = ["n01440764", "n01443537", "n01484850"]
    ilsvrc_ids = [3, 1, 2]  # the devkit's ids are not in wnid order
    src = tmp_path / "src"
    per_class = src / "per_class"
    per_class.mkdir(parents=True)
    train_tar = io.BytesIO()
    with tarfile.open(fileobj=train_tar, mode="w") as outer:
        for w in wnids:
            (per_class / w).mkdir()
            (per_class / w / f"{w}_1.JPEG").write_bytes(b"jpeg")
            inner = per_class / f"{w}.tar"
            with tarfile.open(inner, "w") as t:
                t.add(per_class / w / f"{w}_1.JPEG", arcname=f"{w}_1.JPEG")
            outer.add(inner, arcname=f"{w}.tar")
    val_dir = src / "val"
    val_dir.mkdir()
    truth = [1, 3, 2, 1]  # ILSVRC2012 ids of val images 1..4
    for n in range(1, 5):
        (val_dir / f"ILSVRC2012_val_{n:08d}.JPEG").write_bytes(b"jpeg")
    devkit = src / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in truth))
    synsets = np.zeros((3, 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    for k, (i, w) in enumerate(zip(ilsvrc_ids, wnids)):
        synsets[k, 0] = (np.array([[i]]), w, "words", np.array([[0]]))
    scipy_io.savemat(str(devkit / "meta.mat"), {"synsets": synsets})

    ddir = tmp_path / "data" / "imagenet"
    ddir.mkdir(parents=True)
    (ddir / "ILSVRC2012_img_train.tar").write_bytes(train_tar.getvalue())
    (ddir / "ILSVRC2012_img_val.tar").write_bytes(tar_of(str(val_dir), ".", mode="w"))
    devkit_tar = tar_of(str(src / "ILSVRC2012_devkit_t12"), "ILSVRC2012_devkit_t12")
    (ddir / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(devkit_tar)
    server.files["/m/classnames.txt"] = b"n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n"
    rc, out = run("--root", str(tmp_path / "data"), "--mirror", server.url + "/m", "--no-checksum", "imagenet")
    assert rc == 0, out
    val = ddir / "images" / "val"
    id_to_wnid = dict(zip(ilsvrc_ids, wnids))
    for n, i in enumerate(truth, start=1):
        assert (val / id_to_wnid[i] / f"ILSVRC2012_val_{n:08d}.JPEG").is_file()
    for w in wnids:
        assert (ddir / "images" / "train" / w / f"{w}_1.JPEG").is_file()
    assert not list((ddir / "images" / "train").glob("*.tar"))
    assert (ddir / "ILSVRC2012_img_train.tar").exists()  # the user's own file is kept
    rc, out = run("--root", str(tmp_path / "data"), "--check", "imagenet")
    assert rc == 0, out


def test_variants_get_imagenet_classnames_copied(tmp_path, server):
    a = make_dataset("imagenet_a", tmp_path / "src", size=8)
    os.remove(os.path.join(a, "classnames.txt"))
    server.files["/m/imagenet-a.tar"] = tar_of(os.path.join(a, "imagenet-a"), "imagenet-a", mode="w")
    server.files["/m/classnames.txt"] = _classnames(8)  # ImageNet's file; the variant holds every other class
    root = str(tmp_path / "data")
    rc, out = run("--root", root, "--mirror", server.url + "/m", "--no-checksum", "imagenet_a")
    assert rc == 0, out
    assert open(os.path.join(root, "imagenet-adversarial", "classnames.txt"), "rb").read() == _classnames(8)
    assert len(build(root, "ImageNetA").classnames) == 4


def _classnames(n: int) -> bytes:
    from datasets.synthetic import _imagenet_classes

    return "".join(f"{w} {c}\n" for w, c in _imagenet_classes(n)).encode()


# --- --check on broken trees ------------------------------------------------------------------------


def test_check_healthy_tree_passes_and_reports_counts(tmp_path):
    make_dataset("dtd", tmp_path, size=8)
    rc, out = run("--root", str(tmp_path), "--check", "dtd")
    assert rc == 0, out
    assert "train: 32 of 32 images" in out and "4 classes: banded, blotchy, braided, bubbly" in out


def test_check_missing_images_and_missing_dataset(tmp_path):
    ddir = make_dataset("dtd", tmp_path, size=8)
    os.remove(os.path.join(ddir, "images", "banded", "banded_0000.jpg"))
    rc, out = run("--root", str(tmp_path), "--check", "dtd", "eurosat")
    assert rc == 1
    assert "problem: train: 1 of 32 images missing" in out and "banded/banded_0000.jpg" in out
    assert f"problem: folder {os.path.join(str(tmp_path), 'eurosat')} missing: run `python -m datasets.prepare" in out


def test_check_unsorted_imagenet_val(tmp_path):
    ddir = make_dataset("imagenet", tmp_path, size=8)
    val = os.path.join(ddir, "images", "val")
    for w in os.listdir(val):
        for f in os.listdir(os.path.join(val, w)):
            shutil.move(os.path.join(val, w, f), os.path.join(val, f))
        os.rmdir(os.path.join(val, w))
    rc, out = run("--root", str(tmp_path), "--check", "imagenet")
    assert rc == 1 and "problem: images/val holds 12 images not sorted into class folders" in out
    assert "ILSVRC2012_devkit_t12.tar.gz" in out


def test_check_stale_fewshot_cache(tmp_path):
    ddir = make_dataset("dtd", tmp_path, size=8)
    random.seed(1)
    build(tmp_path, "DescribableTextures", shots=2)
    cache = os.path.join(ddir, "split_fewshot", "shot_2-seed_1.pkl")
    assert run("--root", str(tmp_path), "--check", "dtd")[0] == 0
    new_root = tmp_path / "new_root"
    new_root.mkdir()
    shutil.move(ddir, new_root / "dtd")  # the data moved: the split file still works, the cache names old paths
    cache = os.path.join(new_root, "dtd", "split_fewshot", "shot_2-seed_1.pkl")
    rc, out = run("--root", str(new_root), "--check", "dtd")
    assert rc == 1 and f"problem: stale cache {cache}" in out and "delete it" in out


def test_check_reports_a_rebuilt_split(tmp_path):
    make_dataset("dtd", tmp_path, size=8, with_split=False)
    build(tmp_path, "DescribableTextures")
    rc, out = run("--root", str(tmp_path), "--check", "dtd")
    assert rc == 0 and "was rebuilt here, not the published file" in out


def test_bad_arguments_are_one_error_line(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "nope"]) == 2
    assert main(["--root", str(tmp_path), "--mirror", "ftp://x", "dtd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: unknown dataset nope") and err[1].startswith("error: --mirror must be")


def test_split_json_from_a_mirror_is_written_atomically(tmp_path, server):
    """Only complete files get their final name: a broken transfer leaves a .part, never a short json."""
    server.files["/m/split_zhou_EuroSAT.json"] = json.dumps({"train": []}).encode()
    spec = DatasetSpec("E", "e", "e", (FileSpec("split_zhou_EuroSAT.json", (), ("split_zhou_EuroSAT.json",)),), ())
    with contextlib.redirect_stdout(io.StringIO()):
        res = prepare_one(spec, Options(str(tmp_path), mirror=server.url + "/m", quiet=True))
    assert res.status == DOWNLOADED and os.listdir(tmp_path / "e") == ["split_zhou_EuroSAT.json"]


def test_rebuilt_split_is_replaced_by_the_published_one(tmp_path, server):
    files = dtd_files(tmp_path)
    ddir = make_dataset("dtd", tmp_path / "data", size=8, with_split=False)
    random.seed(3)
    build(tmp_path / "data", "DescribableTextures", shots=1)  # rebuilds the split and draws a cache from it
    assert build(tmp_path / "data", "DescribableTextures").split_rebuilt
    server.files["/m/split_zhou_DescribableTextures.json"] = files["split_zhou_DescribableTextures.json"]
    rc, out = run("--root", str(tmp_path / "data"), "--mirror", server.url + "/m", "--no-checksum", "dtd")
    assert rc == 0, out
    assert open(os.path.join(ddir, "split_zhou_DescribableTextures.json"), "rb").read() == files[
        "split_zhou_DescribableTextures.json"]  # fmt: skip
    assert not os.path.exists(os.path.join(ddir, "split_zhou_DescribableTextures.json.rebuilt"))
    assert not os.path.exists(os.path.join(ddir, "split_fewshot"))
    assert build(tmp_path / "data", "DescribableTextures").split_rebuilt is False


def test_imagenet_val_sorted_from_kaggles_solution_file(tmp_path):
    """Kaggle's ILSVRC copy comes with LOC_val_solution.csv instead of the devkit: it sorts val too."""
    ddir = make_dataset("imagenet", tmp_path, size=8)
    val = os.path.join(ddir, "images", "val")
    rows, n = ["ImageId,PredictionString"], 0
    for w in sorted(os.listdir(val)):
        for f in sorted(os.listdir(os.path.join(val, w))):
            n += 1
            shutil.move(os.path.join(val, w, f), os.path.join(val, f"ILSVRC2012_val_{n:08d}.JPEG"))
            rows.append(f"ILSVRC2012_val_{n:08d},{w} 1 2 3 4")
        os.rmdir(os.path.join(val, w))
    open(os.path.join(ddir, "LOC_val_solution.csv"), "w").write("\n".join(rows) + "\n")
    assert run("--root", str(tmp_path), "--check", "imagenet")[0] == 1
    rc, out = run("--root", str(tmp_path), "imagenet")
    assert rc == 0 and "sorted 12 val images into 4 class folders" in out, out
    assert run("--root", str(tmp_path), "--check", "imagenet")[0] == 0
