"""Fetching one file safely: resumable HTTP (Range onto ``<file>.part``), gdown for Drive, checksums.

A file only appears under its final name once it is complete and verified (written as ``.part``,
then renamed), so an interrupted run leaves either nothing or a ``.part`` that the next run resumes.
HTTP uses the standard library only.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

__all__ = ["DownloadError", "file_hash", "verify", "http_download", "gdrive_download", "extract", "extract_member"]

CHUNK = 1 << 20
TIMEOUT = 30  # seconds without data before a source counts as failed
USER_AGENT = "mmrl-datasets-prepare/1.0 (python urllib)"


class DownloadError(Exception):
    """A source could not deliver a good file; the message says why (HTTP status, checksum, size)."""


def file_hash(path: str, algo: str) -> str:
    """Hex digest of a file, read in chunks (archives are many GB)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str, md5: str = "", sha256: str = "", size: int = 0) -> None:
    """Raise DownloadError when the size or a known checksum of ``path`` differs."""
    if size and os.path.getsize(path) != size:
        raise DownloadError(f"size {os.path.getsize(path)} bytes, expected {size}")
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            got = file_hash(path, algo)
            if got != expected.lower():
                raise DownloadError(f"{algo} {got}, expected {expected}")


def http_download(url: str, dest: str, quiet: bool = False) -> None:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial ``.part`` with an HTTP Range request.

    A server that ignores the Range header (status 200) makes the download start over; a 416 means
    the part is already complete. The caller verifies and renames.
    """
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return  # nothing left to fetch
        raise DownloadError(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{getattr(e, 'reason', e)}") from None
    with response:
        if have and response.status != 206:
            have = 0  # Range ignored: the body is the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        name = os.path.basename(dest)
        with open(part, mode) as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=quiet
        ) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
            except OSError as e:
                raise DownloadError(f"connection lost after {f.tell()} bytes ({e}); run again to resume") from None
        if total is not None and os.path.getsize(part) < total:
            raise DownloadError(f"incomplete: {os.path.getsize(part)} of {total} bytes; run again to resume")


def gdrive_download(file_id: str, dest: str, quiet: bool = False) -> None:
    """Fetch a Google Drive file with gdown into ``dest.part``; gdown keeps and resumes its own partial file."""
    import gdown  # a runtime dependency; imported here so that HTTP-only use never loads it

    part = dest + ".part"
    try:
        out = gdown.download(id=file_id, output=part, quiet=quiet, resume=True)  # resumes its own partials
    except Exception as e:  # gdown raises its own types for quota, permissions and network errors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(reason if len(reason) <= 200 else reason[:197] + "...") from None
    if not out or not os.path.exists(part):
        raise DownloadError("nothing downloaded (quota or access)")


def _safe_members(tar: tarfile.TarFile, target: str) -> Iterator[tarfile.TarInfo]:
    root = os.path.realpath(target)
    for m in tar.getmembers():
        path = os.path.realpath(os.path.join(target, m.name))
        if not (path == root or path.startswith(root + os.sep)) or m.issym() or m.islnk() or m.isdev():
            continue  # absolute paths, ../ and links stay out of the data tree
        yield m


def extract(archive: str, target: str) -> None:
    """Unpack a tar (any compression) or zip into ``target``; paths leaving ``target`` are skipped."""
    os.makedirs(target, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            root = os.path.realpath(target)
            for info in z.infolist():
                path = os.path.realpath(os.path.join(target, info.filename))
                if path == root or path.startswith(root + os.sep):
                    z.extract(info, target)
        return
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, members=_safe_members(tar, target))
    except tarfile.TarError as e:
        raise DownloadError(f"{os.path.basename(archive)} is not a readable tar or zip archive ({e})") from None


def extract_member(archive: str, member: str, dest: str) -> None:
    """Copy one member of a zip or tar to ``dest`` (via ``dest.part``)."""
    part = dest + ".part"
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        else:
            with tarfile.open(archive) as tar:
                src = tar.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except (KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise DownloadError(f"{member} not found in {os.path.basename(archive)} ({e})") from None


@contextmanager
def removing(path: str) -> Iterator[str]:
    """Yield ``path`` and delete it afterwards (temporary outer archives)."""
    try:
        yield path
    finally:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
