"""Resumable, checksummed downloads of data set archives (standard library only).

:func:`download` writes to ``<dest>.part`` and renames it to ``dest`` only once the whole file
is there and, when a SHA-256 is given, verified, so ``dest`` is never half a file. An
interrupted download leaves the ``.part`` file behind; the next call asks the server for the
rest with an HTTP ``Range`` request, and starts from zero when the server does not honour it.
:func:`cache_dir` is where loaders keep what they download (``$LSTMKIT_DATA``, by default
``~/.cache/lstmkit``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm


def cache_dir() -> Path:
    """The download cache: ``$LSTMKIT_DATA``, by default ``~/.cache/lstmkit``."""
    return Path(os.environ.get("LSTMKIT_DATA", "~/.cache/lstmkit")).expanduser()


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 digest of the file at ``path``, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    chunk: int = 1 << 20,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download and verifying its checksum.

    An existing ``dest`` is kept without touching the network when ``sha256`` is ``None`` or
    matches it; one that does not match is downloaded again.

    Args:
        url: what to download (``http``, ``https`` or ``file`` URL).
        dest: the final path; its folder is created if needed.
        sha256: the expected hex SHA-256 of the file, or ``None`` to skip the check.
            Default: ``None``
        chunk: bytes read and written at a time. Default: ``1 << 20``
        progress: show a tqdm progress bar. Default: ``True``
        timeout: seconds to wait for the server before giving up. Default: 60.0

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ConnectionError: the server cannot be reached, answers with an HTTP error, or closes
            the connection early (the ``.part`` file is kept, so a rerun resumes).
        ValueError: the downloaded file does not match ``sha256`` (it is deleted).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 is not None else None
    if dest.is_file() and (expected is None or sha256_of(dest, chunk) == expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    _fetch(url, part, chunk=chunk, progress=progress, timeout=timeout)
    if expected is not None:
        actual = sha256_of(part, chunk)
        if actual != expected:
            part.unlink()
            raise ValueError(
                f"checksum mismatch for {dest} downloaded from {url}: expected SHA-256 "
                f"{expected}, got {actual} (the file was deleted)"
            )
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, *, chunk: int, progress: bool, timeout: float) -> None:
    """Complete ``part`` from ``url``, appending to what it already holds when possible."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The .part file is no prefix the server can continue (say, it is longer than
            # the file now served): start over.
            part.unlink()
            return _fetch(url, part, chunk=chunk, progress=progress, timeout=timeout)
        raise ConnectionError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise ConnectionError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from exc
    with response:
        if offset and response.status == 206 and _range_start(response) != offset:
            response.close()
            part.unlink()
            return _fetch(url, part, chunk=chunk, progress=progress, timeout=timeout)
        if response.status != 206:
            offset = 0  # the server ignored the Range header and sends the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
        )
        with open(part, "ab" if offset else "wb") as f, bar:
            while True:
                try:
                    block = response.read(chunk)
                except (OSError, http.client.HTTPException) as exc:
                    raise ConnectionError(
                        f"download of {url} broke off after {received} bytes: {exc} "
                        f"(kept in {part}; run again to resume)"
                    ) from exc
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise ConnectionError(
            f"download of {url} broke off after {received} of {total} bytes "
            f"(kept in {part}; run again to resume)"
        )


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """The first byte of a 206 response, from its ``Content-Range`` header."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None
