"""Downloads resume with HTTP Range requests, verify their checksum and fail with the URL."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from lstmkit.data import imdb
from lstmkit.data.download import cache_dir, download

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, honouring ``Range: bytes=N-`` unless the server says otherwise.

    The server records each request's Range header and the body bytes it sent, and can cut
    a body short after ``server.cut_after`` bytes (announcing the full length).
    """

    def do_GET(self) -> None:
        server = self.server
        server.ranges.append(self.headers.get("Range"))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(match.group(1)) if match and server.honour_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if match and server.honour_range:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            body = body[: server.cut_after]
        server.served += len(body)  # counted before sending: the client may finish first
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over ``tmp_path/www``; ``server.url(name)`` gives a file's URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    handler = functools.partial(RangeHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.ranges, httpd.served, httpd.honour_range, httpd.cut_after = [], 0, True, None
    httpd.root = root
    httpd.url = lambda name: f"http://127.0.0.1:{httpd.server_port}/{name}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_full_download_with_checksum(server, tmp_path):
    dest = tmp_path / "out" / "data.bin"
    assert download(server.url("data.bin"), dest, PAYLOAD_SHA256, chunk=4096) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix(".bin.part").exists()
    assert server.ranges == [None] and server.served == 102400


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(ValueError) as info:
        download(server.url("data.bin"), dest, "0" * 64, progress=False)
    assert str(info.value) == (
        f"checksum mismatch for {dest} downloaded from {server.url('data.bin')}: expected "
        f"SHA-256 {'0' * 64}, got {PAYLOAD_SHA256} (the file was deleted)"
    )
    assert list(tmp_path.glob("data.bin*")) == []


def test_resumes_a_partial_download(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_suffix(".bin.part").write_bytes(PAYLOAD[:30000])
    download(server.url("data.bin"), dest, PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=30000-"] and server.served == 102400 - 30000


def test_restarts_when_the_server_ignores_range(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "data.bin"
    dest.with_suffix(".bin.part").write_bytes(b"x" * 30000)
    download(server.url("data.bin"), dest, PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=30000-"] and server.served == 102400


def test_restarts_when_the_partial_file_is_too_long(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_suffix(".bin.part").write_bytes(b"x" * 200000)
    download(server.url("data.bin"), dest, PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=200000-", None] and server.served == 102400


def test_broken_connection_keeps_the_part_and_a_rerun_resumes(server, tmp_path):
    dest, url = tmp_path / "data.bin", server.url("data.bin")
    server.cut_after = 40000
    with pytest.raises(ConnectionError, match=f"download of {url} broke off after 40000 of "):
        download(url, dest, PAYLOAD_SHA256, progress=False)
    assert dest.with_suffix(".bin.part").stat().st_size == 40000 and not dest.exists()
    server.cut_after = None
    download(url, dest, PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=40000-"] and server.served == 102400


def test_http_error_names_the_url(server, tmp_path):
    url = server.url("missing.tar.gz")
    with pytest.raises(ConnectionError, match=f"download of {re.escape(url)} failed: HTTP 404"):
        download(url, tmp_path / "missing.tar.gz", None, progress=False)
    assert list(tmp_path.glob("missing*")) == []


def test_unreachable_server_names_the_url(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.bin"  # nothing listens there any more
    with pytest.raises(ConnectionError, match=f"cannot download {re.escape(url)}: "):
        download(url, tmp_path / "data.bin", None, progress=False)


def test_a_verified_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "data.bin"
    download(server.url("data.bin"), dest, PAYLOAD_SHA256, progress=False)
    download(server.url("data.bin"), dest, PAYLOAD_SHA256, progress=False)
    download(server.url("data.bin"), dest, None, progress=False)
    assert server.ranges == [None] and server.served == 102400
    dest.write_bytes(b"stale")  # a file that fails the check is replaced
    download(server.url("data.bin"), dest, PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD and server.served == 2 * 102400


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LSTMKIT_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "lstmkit"


def test_load_imdb_downloads_into_the_cache(server, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in [("train/pos/0_8.txt", b"Fine."), ("train/neg/0_2.txt", b"Poor.")]:
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text))
    (server.root / "tiny.tar.gz").write_bytes(buffer.getvalue())
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(imdb, "IMDB_URL", server.url("tiny.tar.gz"))
    monkeypatch.setattr(imdb, "IMDB_SHA256", hashlib.sha256(buffer.getvalue()).hexdigest())
    for _ in range(2):  # the second call reads the cached archive
        data = imdb.load_imdb(None, "train")
        assert [(r.label, r.rating, r.text) for r in data] == [(0, 2, "Poor."), (1, 8, "Fine.")]
    assert (tmp_path / "cache" / "aclImdb_v1.tar.gz").read_bytes() == buffer.getvalue()
    assert server.ranges == [None]
