"""Plain UTF-8 text: one file, or every file of a folder, read whole and checked."""

from __future__ import annotations

from pathlib import Path


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file, or of every file under a folder (sorted by path, joined
    with a newline). Errors name the file: a missing path, undecodable bytes (with their
    offset), or no text at all.

    Example::

        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.txt").write_text("to be"), (d / "b.txt").write_text("or not")
        >>> read_text(d)
        'to be\\nor not'
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"no text files under {path}")
        text = "\n".join(_read_file(p) for p in files)
    elif path.is_file():
        text = _read_file(path)
    else:
        raise FileNotFoundError(f"no such file or directory: {path}")
    if not text.strip():
        raise ValueError(f"{path} holds no text (it is empty or only whitespace)")
    return text


def _read_file(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text: undecodable byte 0x{data[e.start]:02x} at offset {e.start}"
        ) from None
