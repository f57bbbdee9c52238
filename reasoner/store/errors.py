"""Errors of the preference store: one line a person can act on, like every ReasonerError."""

from __future__ import annotations

import errno
import os
import sqlite3

from ..errors import ReasonerError


class StoreError(ReasonerError):
    """The data directory cannot hold what was asked: full, read-only or unreadable."""


class PreferenceError(ReasonerError):
    """A preference, reflection or draw names something that does not exist or does not fit."""


def writable(directory) -> bool:
    """Whether files can be made in `directory` (False on a read-only mount or an immutable dir)."""
    try:
        return os.access(directory, os.W_OK) and not os.statvfs(directory).f_flag & os.ST_RDONLY
    except OSError:
        return False


def store_error(error: BaseException, data_dir) -> StoreError:
    """A one-line StoreError for an sqlite3 or OS error met while writing under `data_dir`."""
    text = str(error).lower()
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or "full" in text:
        reason = "is full"
    elif (
        code in (errno.EROFS, errno.EACCES, errno.EPERM)
        or "readonly" in text
        or "read-only" in text
        or not writable(data_dir)
    ):
        reason = "is read-only"
    elif isinstance(error, sqlite3.OperationalError) and "locked" in text:
        reason = "is busy (another writer held the database too long)"
    else:
        reason = f"cannot be written ({' '.join(str(error).split())[:200] or type(error).__name__})"
    return StoreError(
        f"the data directory {data_dir} {reason}; nothing of this action was saved, earlier work is intact"
    )
