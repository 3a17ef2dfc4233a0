"""datasets.prepare and --check for the DG datasets against a local HTTP server: the release zips land where
MetaPrompt's loaders read them (Dassl's top folders office_home_dg/ and VLCS/ renamed), DomainNet's split
lists go to splits/, the 15 CoOp datasets stay the default, and --check names each missing domain part."""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import zipfile

import pytest

import datasets  # noqa: F401  (registers the datasets)
from datasets.prepare import resolve
from datasets.sources import DG_SPECS, DOMAINNET_DOMAINS, DOMAINNET_MD5
from datasets.synthetic import make_dataset
from tests.test_datasets_dg import SIZES, build
from tests.test_prepare import Server, run
from tests.test_prepare import server as server  # noqa: F401  (the fixture)


def zip_of(tree: str, arcname: str) -> bytes:
    """A zip holding ``tree`` under the top folder ``arcname`` (as Dassl's release zips are built)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for folder, _, files in os.walk(tree):
            for f in files:
                path = os.path.join(folder, f)
                z.write(path, os.path.join(arcname, os.path.relpath(path, tree)))
    return buf.getvalue()


@pytest.mark.parametrize(("name", "folder", "archive", "top"), [
    ("PACSFS", "pacs", "pacs.zip", "pacs"),
    ("OfficeHomeFS", "office_home", "office_home_dg.zip", "office_home_dg"),
    ("VLCSFS", "vlcs", "vlcs.zip", "VLCS"),
])  # fmt: skip
def test_release_zip_is_placed_where_metaprompt_reads_it(tmp_path, server: Server, name, folder, archive, top):
    src = make_dataset(name, str(tmp_path / "src"), **SIZES)
    server.files[f"/m/{archive}"] = zip_of(src, top)
    root = str(tmp_path / "data")
    rc, out = run("--root", root, "--mirror", server.url + "/m", folder)
    assert rc == 0, out
    assert "no published checksum known; accepted as complete" in out and re.search(rf"\n{name} +downloaded", out)
    assert sorted(os.listdir(os.path.join(root, folder))) == sorted(os.listdir(src))  # no archive, no temp folder
    assert len(build(root, name, id_=1)[0].test) == len(build(str(tmp_path / "src"), name, id_=1)[0].test) > 0
    rc, out = run("--root", root, "--check", folder)
    assert rc == 0 and "all checked datasets are complete" in out, out
    server.requests.clear()
    assert run("--root", root, "--mirror", server.url + "/m", folder)[0] == 0 and server.requests == []


def domainnet_release(tmp_path) -> dict[str, bytes]:
    """The cleaned release as its host serves it: one zip per domain (top folder = domain) and 12 lists."""
    src = make_dataset("DomainNetFS", str(tmp_path / "src"), **SIZES)
    files = {}
    for d in DOMAINNET_DOMAINS:
        files[f"{d}.zip"] = zip_of(os.path.join(src, d), d)
        for part in ("train", "test"):
            files[f"{d}_{part}.txt"] = open(os.path.join(src, "splits", f"{d}_{part}.txt"), "rb").read()
    return files


def test_domainnet_from_the_official_host_layout(tmp_path, server: Server):
    for name, body in domainnet_release(tmp_path).items():
        server.files[f"/m/{name}"] = body
    root = str(tmp_path / "data")
    rc, out = run("--root", root, "--mirror", server.url + "/m", "--no-checksum", "DomainNetFS")
    assert rc == 0, out
    ddir = os.path.join(root, "domainnet")
    assert sorted(os.listdir(ddir)) == sorted([*DOMAINNET_DOMAINS, "splits"])
    assert len(os.listdir(os.path.join(ddir, "splits"))) == 12
    ds, _ = build(root, "DomainNetFS", targets=["sketch"])
    assert len(ds.train_x) == 85 and len(ds.test) == 12  # 18 per source (13 in painting); 4 x 3 of sketch
    rc, out = run("--root", root, "--check", "domainnet")
    assert rc == 0 and "painting: train 13, test 12 images" in out, out


def test_domainnet_files_are_checked_against_the_pinned_md5(tmp_path, server: Server):
    """A file that differs from the release (here: the synthetic one) is refused; --no-checksum accepts it."""
    for name, body in domainnet_release(tmp_path).items():
        server.files[f"/m/{name}"] = body
    rc, out = run("--root", str(tmp_path / "data"), "--mirror", server.url + "/m", "domainnet")
    assert rc == 1 and f"expected {DOMAINNET_MD5['clipart.zip']}" in out
    assert hashlib.md5(server.files["/m/clipart.zip"]).hexdigest() != DOMAINNET_MD5["clipart.zip"]


def test_a_failing_drive_source_prints_the_manual_step(tmp_path, monkeypatch):
    """Drive quota errors are common: the manual step names the file id and where the zip goes."""
    from datasets import prepare

    def quota(*args, **kwargs):
        raise prepare.DownloadError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(prepare, "gdrive_download", quota)
    root = str(tmp_path / "data")
    rc, out = run("--root", root, "vlcs")
    assert rc == 1 and re.search(r"\nVLCSFS +manual step needed", out)
    assert "https://drive.google.com/file/d/1r0WL5DDqKfSPp9E3tRENwHaXNs1olLZd" in out
    assert f"put it at {os.path.join(root, 'vlcs', 'vlcs.zip')}" in out


def test_check_names_each_missing_domain_part(tmp_path):
    ddir = make_dataset("PACSFS", str(tmp_path), **SIZES)
    os.remove(os.path.join(ddir, "splits", "cartoon_crossval_kfold.txt"))
    os.remove(os.path.join(ddir, "images", "photo", "giraffe", "t001_giraffe.jpg"))
    rc, out = run("--root", str(tmp_path), "--check", "pacs")
    assert rc == 1
    assert "problem: PACSFS: split list of domain cartoon not found: " in out and "cartoon_crossval_kfold.txt" in out
    assert "problem: photo train: 1 of 18 listed images missing (e.g. " in out and "t001_giraffe.jpg" in out
    shutil.rmtree(os.path.join(ddir, "images", "sketch"))
    rc, out = run("--root", str(tmp_path), "--check", "pacs")
    assert "problem: sketch train: 18 of 18 listed images missing" in out


def test_default_is_the_coop_datasets_and_dg_is_a_group():
    assert [s.folder for s in resolve([])] == [s.folder for s in resolve(["coop"])]
    assert len(resolve([])) == 15 and not set(resolve([])) & set(DG_SPECS)
    assert resolve(["dg"]) == list(DG_SPECS) and resolve(["PACS", "vlcs"]) == [DG_SPECS[0], DG_SPECS[2]]
