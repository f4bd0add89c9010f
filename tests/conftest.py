"""Shared test settings: a private cache per test session, so tests never touch the user's."""

import os
import pathlib
import shutil

import jax
import numpy as np
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


def assert_replicas_equal_single_runs(make, grid, workdir, *, lam_used: bool):
  """Trains 2 seeds x `grid` as K replicas of one run, then replicas 1 and 2 alone (the second
  seed at the first point, the first seed at the second: each axis, and their order); asserts
  each one's final params equal its single run's, that seeds differ and (lam_used) grid points
  too.

  make(seed=, num_seeds=, lam=, grid=) -> a locked training config. Returns (config, model,
  stacked params) of the K-replica run.
  """
  from ccmnist.train import loop  # pylint: disable=import-outside-toplevel
  from ccmnist.train import runs  # pylint: disable=import-outside-toplevel
  workdir = pathlib.Path(workdir)
  both = make(seed=0, num_seeds=2, lam=grid[0], grid=grid)
  loop.train_and_evaluate(both, workdir / "k4")
  model, p_all, _ = runs.load_run(workdir / "k4", replica=None)
  for r in [r for r in runs.replicas(both) if r["replica"] in (1, 2)]:
    single = workdir / f"single{r['replica']}"
    loop.train_and_evaluate(make(seed=r["seed"], num_seeds=1, lam=r["lam"], grid=()), single)
    _, p_one, _ = runs.load_run(single)
    for a, b in zip(jax.tree_util.tree_leaves(p_all), jax.tree_util.tree_leaves(p_one)):
      np.testing.assert_allclose(np.asarray(a)[r["replica"]], np.asarray(b), rtol=1e-5,
                                 atol=1e-6)
  leaf = np.asarray(jax.tree_util.tree_leaves(p_all)[-1])  # Replica = grid point * 2 + seed.
  assert not np.allclose(leaf[0], leaf[1])  # Seeds differ.
  if lam_used:  # And so do grid points, in some layer.
    assert any(not np.allclose(np.asarray(a)[0], np.asarray(a)[2])
               for a in jax.tree_util.tree_leaves(p_all))
  return both, model, p_all


@pytest.fixture(name="replicas_equal_single_runs")
def fixture_replicas_equal_single_runs():
  """assert_replicas_equal_single_runs, for the method test files."""
  return assert_replicas_equal_single_runs
