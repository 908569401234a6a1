"""Run folders that are safe to use: slug names inside the runs folder, one run at a time.

* :func:`run_folder` turns ``study.name`` into ``<runs_dir>/<name>`` and refuses names that
  are not plain folder names (``../x``, ``a/b``, empty), so a run never writes outside the
  runs folder.
* :class:`RunLock` is an exclusive lock on ``<run folder>/.lock`` (``fcntl.flock``, released
  by the operating system when the process ends, even on SIGKILL): a second run into the same
  folder stops at once with a message naming the holder.
* :func:`remove_temporaries` deletes the ``.<name>.tmp-*`` files and folders that
  :func:`terracarbon.data.io.atomic_path` uses, after an interrupt.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import shutil
from pathlib import Path

from terracarbon.errors import ParameterError, StageError

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
"""A run name: letters, digits, '.', '_' or '-', starting with a letter or digit."""
LOCK_FILE = ".lock"


def check_run_name(name: object, *, key: str = "study.name") -> str:
    """``name`` if it is a valid run-folder name; ParameterError naming ``key`` otherwise.

    >>> check_run_name("guangdong_2000-2021")
    'guangdong_2000-2021'
    """
    if not isinstance(name, str) or not SLUG.match(name) or ".." in name:
        raise ParameterError(
            f"{key}={name!r}: a run name must be a plain folder name of letters, digits, "
            "'.', '_' or '-' (up to 80, starting with a letter or digit), e.g. "
            "guangdong_2021; it names the folder inside --runs-dir."
        )
    return name


def run_folder(runs_dir: str | os.PathLike, name: str) -> Path:
    """``<runs_dir>/<name>``, resolved, checked to lie inside ``runs_dir``."""
    check_run_name(name)
    root = Path(runs_dir).resolve()
    for folder in (root, *root.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ParameterError(f"--runs-dir {runs_dir}: {folder} is not a folder (a file "
                                     "has that name); give a folder to hold the run folders.")
            break
    folder = (root / name).resolve()
    if folder.parent != root:
        raise ParameterError(f"study.name={name!r} resolves to {folder}, outside the runs "
                             f"folder {root}; choose a plain name.")
    return folder


class RunLock:
    """Exclusive lock of a run folder for the lifetime of a ``with`` block."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fh = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StageError(
                f"run folder {self.path.parent} is in use by another run ({holder}); wait for "
                "it to finish, or give this run another study.name (--set study.name=...)."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started "
                 f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete atomic-write temporaries (``.<name>.tmp-<hex>…``) below ``folder``; their paths."""
    removed = []
    for path in sorted(Path(folder).rglob(".*.tmp-*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
