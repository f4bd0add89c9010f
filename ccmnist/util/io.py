"""Atomic writes and plain reads: every file the project writes goes through here.

A write goes to a temporary file beside the target, then `os.replace`s it, so a reader (or a
resumed run) sees the old file or the new one, never a partial one.
"""

import contextlib
import errno
import json
import math
import os
import pathlib

import numpy as np


# The write errors a user can fix, and how.
_HOW_TO_FIX = {
    errno.ENOSPC: "the disk is full; free space or choose a --workdir on another disk",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose a --workdir on another disk",
    errno.EFBIG: "the file would exceed the file-size limit (`ulimit -f`) or the file system's; "
                 "raise the limit or choose a --workdir on another file system",
    errno.EACCES: "permission denied; choose a --workdir you may write to, or fix its "
                  "permissions",
    errno.EPERM: "operation not permitted; choose a --workdir you may write to, or fix its "
                 "permissions or attributes (chattr)",
    errno.EROFS: "the file system is read-only; choose a writable --workdir",
}


class WriteError(OSError):
  """A file could not be written (disk full, read-only, no permission); the file that was there
  before is intact. str() is the one-line message."""

  def __str__(self):
    return self.strerror


def how_to_fix(e: OSError) -> str | None:
  """What a user can do about a file-system error (None when it is not one of those)."""
  return _HOW_TO_FIX.get(e.errno)


def describe_os_error(e: OSError, path=None) -> str | None:
  """A one-line message for a write error the user can fix (None for other errors)."""
  how = how_to_fix(e)
  if how is None:
    return None
  where = path or e.filename or "a file"
  return f"cannot write {where}: {how}."


@contextlib.contextmanager
def explained_write_errors(path):
  """Re-raises a fixable OSError of the block (describe_os_error) as a WriteError naming path.

  For blocks that change no existing file in place (an atomic write, creating a file).
  """
  try:
    yield
  except WriteError:
    raise
  except OSError as e:
    message = describe_os_error(e, path)
    if message is None:
      raise
    raise WriteError(e.errno, f"{message} Files written before are intact.", str(path)) from e


def _atomic(path, write) -> pathlib.Path:
  """Calls write(tmp_path), then renames tmp_path to path; returns path.

  Raises WriteError (an OSError) saying how to fix a full disk, a file-size limit, a read-only
  file system or a missing permission; the old file at `path`, if any, is left as it was.
  """
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # Same suffix: np.savez keeps it.
  try:
    with explained_write_errors(path):
      path.parent.mkdir(parents=True, exist_ok=True)
      write(tmp)
      os.replace(tmp, path)
  finally:
    try:
      tmp.unlink(missing_ok=True)
    except OSError:  # A read-only directory: there is no temporary file to remove either.
      pass
  return path


def write_text(path, text: str) -> pathlib.Path:
  return _atomic(path, lambda tmp: tmp.write_text(text))


def write_bytes(path, data: bytes) -> pathlib.Path:
  return _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json(path, obj, *, indent: int = 2) -> pathlib.Path:
  return write_text(path, json.dumps(obj, indent=indent, default=str))


def write_npz(path, **arrays) -> pathlib.Path:
  return _atomic(path, lambda tmp: np.savez(tmp, **arrays))


def read_json(path, default=None):
  """The parsed file, or `default` when it does not exist."""
  path = pathlib.Path(path)
  return json.loads(path.read_text()) if path.exists() else default


def read_npz(path) -> dict:
  """{name: array} of an .npz file, read whole (the file is closed on return)."""
  with np.load(path) as f:
    return {name: f[name] for name in f.files}


def finite_or_none(x):
  """A JSON-safe copy: non-finite floats become None, numpy scalars Python ones."""
  if isinstance(x, dict):
    return {k: finite_or_none(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [finite_or_none(v) for v in x]
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x
