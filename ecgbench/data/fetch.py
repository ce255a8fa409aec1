"""Download a dataset archive once: resumable, checksum-verified, unpacked into an empty folder.

``fetch_cinc2017(to)`` downloads PhysioNet's ``training2017.zip`` and checks
it against the SHA-256 PhysioNet publishes beside it (``SHA256SUMS.txt`` of
the project version), unless ``checksums`` gives one. An interrupted download
leaves ``<to>/.ecgbench-download/<file>.part``; the next call resumes it with
an HTTP Range request. The folder gets a ``.ecgbench-fetch.json`` marker, so
fetching the same archive again is a no-op and fetching into a folder that
holds anything else is refused.

The final (v3) labels are the zip's ``REFERENCE.csv``. ``labels: v1`` of the
``cinc2017`` dataset also needs ``REFERENCE-v1.csv`` from the same PhysioNet
folder, copied beside it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

import ecgbench
from ecgbench import atomic
from ecgbench.errors import DatasetError

CINC2017_URL = "https://physionet.org/files/challenge-2017/1.0.0/training2017.zip"
CHECKSUM_FILE = "SHA256SUMS.txt"  # PhysioNet publishes one per project version: "<sha256> <path>" lines
MARKER_FILE = ".ecgbench-fetch.json"
DOWNLOAD_DIR = ".ecgbench-download"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0


def fetch_cinc2017(to: Path, url: str = CINC2017_URL, checksums: dict | None = None, progress: bool = True) -> Path:
    """Download and unpack the CinC 2017 training set into ``to``; returns the folder holding RECORDS and REFERENCE.csv."""
    return fetch_archive("cinc2017", Path(to), url, checksums, progress)


def fetch_archive(dataset: str, to: Path, url: str, checksums: dict | None = None, progress: bool = True) -> Path:
    """Download ``url`` (a zip), verify its SHA-256 (``checksums[filename]`` or the published SHA256SUMS.txt), unpack into ``to``."""
    filename = PurePosixPath(urllib.request.urlparse(url).path).name or "download.zip"
    expected = (checksums or {}).get(filename)
    marker = to / MARKER_FILE
    if to.exists() and not to.is_dir():
        raise DatasetError(f"{to} is a file, not a folder; pass a new or empty folder with --to")
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("url") == url and (expected is None or done.get("sha256") == expected):
            return to  # already fetched
        raise DatasetError(
            f"{to} already holds {done.get('dataset', 'a dataset')} fetched from {done.get('url')} (sha256 {done.get('sha256')}); "
            "refusing to overwrite it: choose another folder with --to, or delete this one first"
        )
    foreign = sorted(p.name for p in to.iterdir() if p.name != DOWNLOAD_DIR) if to.is_dir() else []
    if foreign:
        raise DatasetError(
            f"{to} is not empty ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}) and was not written by "
            f"'ecgbench data fetch'; refusing to overwrite it. If it already holds the dataset, use it as it is "
            f"(--data-dir {dataset}={to}); otherwise choose an empty or new folder"
        )
    created = not to.exists()
    part = to / DOWNLOAD_DIR / f"{filename}.part"
    try:
        if expected is None:
            expected = published_checksum(url, filename)
        download(url, part, progress)
    except BaseException:
        _remove_empty_download(to, part, created)
        raise
    got = sha256_file(part)
    if got != expected:
        part.unlink()
        raise DatasetError(
            f"{url}: SHA-256 of the download is {got}, expected {expected}; the partial file was deleted. "
            f"Run the command again to download afresh; if it fails again, the file on the server differs from its published checksum"
        )
    unpack(part, to)
    atomic.write_text(marker, json.dumps({"dataset": dataset, "url": url, "sha256": got, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))
    shutil.rmtree(to / DOWNLOAD_DIR, ignore_errors=True)
    return to


def _remove_empty_download(to: Path, part: Path, created: bool) -> None:
    """After a failed download: keep a partial file (the next call resumes it), remove empty folders this call made."""
    if part.exists() and part.stat().st_size > 0:
        return
    part.unlink(missing_ok=True)
    for folder in (part.parent, to) if created else (part.parent,):
        try:
            folder.rmdir()
        except OSError:
            pass  # absent or not empty


def _unreachable(url: str, exc: BaseException) -> str | None:
    """The one-line message for a network failure (no connection, DNS, timeout), or None for an HTTP answer."""
    if isinstance(exc, urllib.error.HTTPError):
        return None
    host = urllib.request.urlparse(url).netloc
    return f"cannot reach {host} ({getattr(exc, 'reason', exc)}): check the network connection (or proxy settings) and run the command again"


def published_checksum(url: str, filename: str) -> str:
    """The SHA-256 of ``filename`` in the ``SHA256SUMS.txt`` beside ``url``."""
    sums_url = url.rsplit("/", 1)[0] + "/" + CHECKSUM_FILE
    fix = f"pass the archive's SHA-256 (--sha256 HASH, or checksums={{'{filename}': HASH}}) from the dataset's download page"
    try:
        with urllib.request.urlopen(_request(sums_url), timeout=TIMEOUT_S) as response:
            text = response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        offline = _unreachable(sums_url, exc) if isinstance(exc, OSError) else None
        raise DatasetError(offline or f"cannot read the published checksums {sums_url} ({exc}); {fix}") from None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and PurePosixPath(parts[1].lstrip("*")).name == filename:
            return parts[0].lower()
    raise DatasetError(f"{sums_url} lists no checksum for {filename}; {fix}")


def download(url: str, part: Path, progress: bool = True) -> None:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range request."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = urllib.request.urlopen(_request(url, headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return  # the partial file is already complete; the checksum decides
        raise DatasetError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}; check the URL (--url) or retry later") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(f"downloading {url} failed: {_unreachable(url, exc)} (it resumes)") from None
    with response:
        resumed = have > 0 and response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        if not resumed:
            have = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        written = have
        bar = _progress_bar(total, have, part.name) if progress else None
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    written += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DatasetError(
                f"download of {url} interrupted after {written} bytes ({exc}); run the command again to resume from {part}"
            ) from None
        finally:
            if bar is not None:
                bar.close()
    if total is not None and written != total:
        raise DatasetError(f"download of {url} stopped at {written} of {total} bytes; run the command again to resume from {part}")


def unpack(archive: Path, to: Path) -> None:
    """Extract a zip into ``to``, dropping a single top-level folder; refuses paths that leave ``to``."""
    staging = archive.parent / "unpacked"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            for name in zf.namelist():
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts:
                    raise DatasetError(f"{archive}: member '{name}' would be written outside {to}; the archive is not a dataset ecgbench can unpack")
            zf.extractall(staging)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive} is not a valid zip ({exc}); delete it and run the command again") from None
    tops = {PurePosixPath(n).parts[0] for n in names}
    root = staging / tops.pop() if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names) else staging
    to.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        shutil.move(str(child), str(to / child.name))
    shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _request(url: str, headers: dict | None = None) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": f"ecgbench/{ecgbench.__version__}", **(headers or {})})


def _progress_bar(total: int | None, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, file=sys.stderr, leave=False)
