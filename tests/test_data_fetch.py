"""fetch_cinc2017 and `ecgbench data fetch` against a local HTTP server: resume, checksums, refusals."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ecgbench.cli.main import main
from ecgbench.data.fetch import DOWNLOAD_DIR, MARKER_FILE, fetch_cinc2017
from ecgbench.errors import DatasetError


def make_zip() -> bytes:
    """A tiny stand-in for training2017.zip: one top-level folder with RECORDS, REFERENCE.csv and a record."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("training2017/RECORDS", "A00001\n")
        zf.writestr("training2017/REFERENCE.csv", "A00001,N\n")
        zf.writestr("training2017/A00001.hea", "A00001 1 300 4\nA00001.mat 16+24 1000/mV 16 0 0 0 0 ECG\n")
        zf.writestr("training2017/A00001.mat", bytes(range(256)) * 64)  # incompressible-ish, ~16 kB
    return buffer.getvalue()


ZIP = make_zip()
ZIP_SHA = hashlib.sha256(ZIP).hexdigest()


class Server:
    """Serves files from a dict, honours ``Range: bytes=N-``, can cut the first response short."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut_first_after: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if outer.cut_first_after is not None:
                    payload, outer.cut_first_after = payload[: outer.cut_first_after], None
                    self.wfile.write(payload)
                    self.close_connection = True
                    return
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # a free port chosen by the OS
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    with Server({"/files/training2017.zip": ZIP, "/files/SHA256SUMS.txt": f"{ZIP_SHA} training2017.zip\n".encode()}) as s:
        yield s


def test_downloads_verifies_and_unpacks_then_is_a_no_op(server, tmp_path):
    to = tmp_path / "cinc"
    url = server.url + "/files/training2017.zip"
    assert fetch_cinc2017(to, url=url, checksums={"training2017.zip": ZIP_SHA}, progress=False) == to
    assert sorted(p.name for p in to.iterdir()) == sorted(["A00001.hea", "A00001.mat", "RECORDS", "REFERENCE.csv", MARKER_FILE])
    assert (to / "A00001.mat").read_bytes() == bytes(range(256)) * 64
    assert server.requests == [("/files/training2017.zip", None)]
    fetch_cinc2017(to, url=url, checksums={"training2017.zip": ZIP_SHA}, progress=False)
    assert len(server.requests) == 1  # already there: nothing downloaded


def test_checksum_read_from_published_sha256sums(server, tmp_path):
    fetch_cinc2017(tmp_path / "cinc", url=server.url + "/files/training2017.zip", progress=False)
    assert [path for path, _ in server.requests] == ["/files/SHA256SUMS.txt", "/files/training2017.zip"]


def test_resumes_a_partial_download_with_a_range_request(server, tmp_path):
    to = tmp_path / "cinc"
    part = to / DOWNLOAD_DIR / "training2017.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ZIP[:5000])
    fetch_cinc2017(to, url=server.url + "/files/training2017.zip", checksums={"training2017.zip": ZIP_SHA}, progress=False)
    assert server.requests == [("/files/training2017.zip", "bytes=5000-")]
    assert (to / "REFERENCE.csv").read_text() == "A00001,N\n"
    assert not (to / DOWNLOAD_DIR).exists()


def test_interrupted_download_resumes_on_the_next_call(server, tmp_path):
    to = tmp_path / "cinc"
    url = server.url + "/files/training2017.zip"
    server.cut_first_after = 7000
    with pytest.raises(DatasetError, match="interrupted after 7000 bytes|stopped at 7000 of"):
        fetch_cinc2017(to, url=url, checksums={"training2017.zip": ZIP_SHA}, progress=False)
    assert (to / DOWNLOAD_DIR / "training2017.zip.part").stat().st_size == 7000
    fetch_cinc2017(to, url=url, checksums={"training2017.zip": ZIP_SHA}, progress=False)
    assert server.requests[-1] == ("/files/training2017.zip", "bytes=7000-")
    assert (to / "RECORDS").read_text() == "A00001\n"


def test_checksum_mismatch_deletes_the_download_and_unpacks_nothing(server, tmp_path):
    to = tmp_path / "cinc"
    with pytest.raises(DatasetError, match=f"SHA-256 of the download is {ZIP_SHA}, expected 0{{64}}; the partial file was deleted"):
        fetch_cinc2017(to, url=server.url + "/files/training2017.zip", checksums={"training2017.zip": "0" * 64}, progress=False)
    assert not (to / DOWNLOAD_DIR / "training2017.zip.part").exists()
    assert not (to / "RECORDS").exists() and not (to / MARKER_FILE).exists()


def test_refuses_to_overwrite_a_different_dataset(server, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"foreign is not empty \(notes.txt\).*refusing to overwrite"):
        fetch_cinc2017(foreign, url=server.url + "/files/training2017.zip", checksums={"training2017.zip": ZIP_SHA}, progress=False)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DatasetError, match="a_file is a file, not a folder"):
        fetch_cinc2017(tmp_path / "a_file", url=server.url + "/files/training2017.zip", checksums={"training2017.zip": ZIP_SHA}, progress=False)
    assert server.requests == []
    fetched = tmp_path / "fetched"
    fetch_cinc2017(fetched, url=server.url + "/files/training2017.zip", checksums={"training2017.zip": ZIP_SHA}, progress=False)
    server.files["/files/other.zip"] = ZIP
    with pytest.raises(DatasetError, match="already holds cinc2017 fetched from .*training2017.zip.*choose another folder"):
        fetch_cinc2017(fetched, url=server.url + "/files/other.zip", checksums={"other.zip": ZIP_SHA}, progress=False)


def test_unreachable_checksums_and_missing_files_say_what_to_do(server, tmp_path):
    with pytest.raises(DatasetError, match="HTTP 404.*check the URL"):
        fetch_cinc2017(tmp_path / "a", url=server.url + "/files/nope.zip", checksums={"nope.zip": ZIP_SHA}, progress=False)
    with pytest.raises(DatasetError, match=r"cannot read the published checksums .*SHA256SUMS.txt.*--sha256 HASH"):
        fetch_cinc2017(tmp_path / "b", url=server.url + "/elsewhere/training2017.zip", progress=False)


def test_cli_fetch(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECGBENCH_QUIET", "1")  # restored after the test (-q sets it for the process)
    to = tmp_path / "cinc"
    url = server.url + "/files/training2017.zip"
    assert main(["-q", "data", "fetch", "cinc2017", "--to", str(to), "--url", url, "--sha256", ZIP_SHA.upper()]) == 0
    assert f"--data-dir cinc2017={to}" in capsys.readouterr().out
    assert (to / "RECORDS").is_file()
    assert main(["data", "fetch", "mitdb", "--to", str(tmp_path / "x")]) == 2
    assert "cannot fetch 'mitdb': known datasets are cinc2017" in capsys.readouterr().err


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_says_check_the_network_and_leaves_no_empty_folder(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/files/training2017.zip"
    to = tmp_path / "cinc"
    assert main(["-q", "data", "fetch", "cinc2017", "--to", str(to), "--url", url]) == 1
    err = capsys.readouterr().err
    assert "cannot reach 127.0.0.1" in err and "check the network connection" in err
    assert "--sha256" not in err  # the checksum was never the problem
    assert not to.exists()
    with pytest.raises(DatasetError, match=r"downloading .* failed: cannot reach 127.0.0.1.*check the network.*\(it resumes\)"):
        fetch_cinc2017(to, url=url, checksums={"training2017.zip": ZIP_SHA}, progress=False)
    assert not to.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(DatasetError, match="cannot reach"):
        fetch_cinc2017(existing, url=url, checksums={"training2017.zip": ZIP_SHA}, progress=False)
    assert existing.is_dir() and not any(existing.iterdir())  # a folder the user made stays, empty as it was
