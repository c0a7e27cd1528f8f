"""Files that may hold personal data or secrets (logs, keys): the owner's alone, whatever the umask."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO

PRIVATE = 0o600


def append_private(path: Path) -> BinaryIO:
    """``path`` opened for appending, mode 0600 (an existing file is narrowed to it too)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)  # the umask may have taken bits away; an older file may have more
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (atomically), mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE)
        handle.write(data)
    os.replace(temporary, path)


def create_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path``, mode 0600; FileExistsError if it exists (never replaced)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE)
        handle.write(data)
