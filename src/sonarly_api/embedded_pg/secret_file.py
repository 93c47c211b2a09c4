"""A secret kept in a file, created once and then the same for every process."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path


def read_or_create_secret(path: Path) -> str:
    """Return the secret stored at ``path``, creating it (0600, atomically) when missing."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.replace(tmp, path)  # present but empty: nobody can rely on it, overwrite
        else:
            # link() fails if a concurrent process created it first; then its secret wins,
            # so every process ends up with the same value.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path.read_text().strip()
