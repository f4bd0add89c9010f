"""Shared test settings: a private cache per test session, so tests never touch the user's."""

import os
import pathlib
import shutil

import jax
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


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
  """Runs of one config in a module compile once: XLA's persistent cache, keyed by HLO. A module
  opts in with pytestmark = pytest.mark.usefixtures("compilation_cache")."""
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = {n: getattr(jax.config, n) for n in names}
  jax.config.update(names[0], str(tmp_path_factory.mktemp("xla_cache")))
  jax.config.update(names[1], 0.0)
  jax.config.update(names[2], 0)
  yield
  for n, v in old.items():
    jax.config.update(n, v)
