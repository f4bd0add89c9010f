"""Atomic writes and plain reads: every file the project writes goes through here.

A write goes to a temporary file beside the target, then `os.replace`s it, so a reader (or a
resumed run) sees the old file or the new one, never a partial one.
"""

import json
import math
import os
import pathlib

import numpy as np


def _atomic(path, write) -> pathlib.Path:
  """Calls write(tmp_path), then renames tmp_path to path; returns path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # Same suffix: np.savez keeps it.
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
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
