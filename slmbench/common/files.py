"""Checks on the files and folders a user names, made before anything is opened or created.

A path is only ``stat``-ed here, never opened: a FIFO, a device or a folder given where a file is
expected fails at once instead of blocking or reading forever, and a file too large to be what it
claims is refused unread.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def file_problem(path: str | Path, max_bytes: int) -> str | None:
    """Why ``path`` cannot be read as an input file ("not found", "is a folder"...), or None when it
    is a regular file of at most ``max_bytes``."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "not found"
    except (OSError, ValueError) as error:  # a name too long, a NUL byte, no permission...
        return f"cannot be read: {getattr(error, 'strerror', None) or error}"
    if stat.S_ISDIR(status.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(status.st_mode):
        return "is not a regular file (a FIFO, socket or device)"
    if status.st_size > max_bytes:
        return f"is {status.st_size:,} bytes, more than the {max_bytes:,} allowed"
    return None


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path``, with ``..`` and symbolic links resolved, lies inside ``folder``."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):  # a NUL byte or a link loop: never inside
        return False


def folder_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be created or used as an output folder (a file in its way), or None."""
    for part in (Path(folder), *Path(folder).parents):
        try:
            status = os.stat(part)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as error:
            return f"cannot be used: {getattr(error, 'strerror', None) or error}"
        return None if stat.S_ISDIR(status.st_mode) else f"{part} is not a folder"
    return None


class InputFileError(ValueError):
    """An input file cannot be read; the message says why (the caller names the file and what it is)."""


def read_input_text(path: str | Path, max_bytes: int) -> str:
    """The UTF-8 text of a checked input file (``file_problem``), or an InputFileError saying why not."""
    problem = file_problem(path, max_bytes)
    if problem:
        raise InputFileError(problem)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(f"not UTF-8 text (invalid byte at position {error.start})") from None
    except OSError as error:
        raise InputFileError(f"cannot be read: {error.strerror or error}") from None


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once, at import: umask can only be read by setting it
NEW_FILE_MODE = 0o666 & ~_UMASK
"""The permissions ``open()`` gives a new file here. A temporary file renamed into place gets them too:
``tempfile`` makes it 0600, readable by its owner only."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks (hex)."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_bytes(directory: Path) -> int:
    """Bytes of every file under ``directory``."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
