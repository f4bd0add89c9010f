"""Shared test settings: a private cache per test session, so tests never touch the user's."""

import os
import pathlib
import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_split_cache(tmp_path_factory):
  """Split caches go to a temp dir; MNIST IDX files are reused from the user cache if present."""
  cache = tmp_path_factory.mktemp("ccmnist_cache")
  user = pathlib.Path(os.environ.get("CCMNIST_CACHE", "~/.cache/ccmnist")).expanduser()
  for f in user.glob("*-ubyte"):
    shutil.copy(f, cache / f.name)
  old = os.environ.get("CCMNIST_CACHE")
  os.environ["CCMNIST_CACHE"] = str(cache)
  yield cache
  if old is None:
    os.environ.pop("CCMNIST_CACHE", None)
  else:
    os.environ["CCMNIST_CACHE"] = old
