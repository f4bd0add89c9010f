"""Every registered training method, trained: K replicas in one run equal single runs, every
parameter it holds trains, and its state is checkpointed and restored (a run resumed from its
first epoch's checkpoint ends where the uninterrupted one does).

The methods and their grids are the registry's (methods.METHODS, each method's Benchmark): a
method is tested here by being registered.
"""

import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from ccmnist.train import loop
from ccmnist.train import methods
from ccmnist.train import runs
from configs import common

pytestmark = pytest.mark.usefixtures("compilation_cache")

TRAINED = [name for name, m in methods.METHODS.items() if m.kind == "train"]


def grid_of(method) -> tuple:
  """Two points of the method's benchmark grid when its lambda is used (so grid points must
  differ), one when it is not; a method outside the benchmark: lambda 0 and 100 (a weight that
  moves the tiny run's params beyond rounding)."""
  grid = method.benchmark.grid if method.benchmark else (0.0, 100.0)
  if method.lam_means == "unused":
    return tuple(grid[:1])
  return tuple(grid[:2]) if len(grid) > 1 else (grid[0], 2 * grid[0])


def tiny_config(name, *, seed=0, num_seeds=1, lam=0.0, grid=(), settings=None):
  """The tiny config (128 train digits, 2 epochs) of method `name`, locked: the benchmark's
  optimizer (Adam, lr 1e-3, under which a few steps move every method's params) and warmup,
  so a method that anneals trains both sides of it."""
  method = methods.get(name)
  c = common.train_config("tiny")
  c.data.train_size = 128
  c.seed, c.num_seeds, c.loss.name, c.loss.lam, c.loss.lam_grid = seed, num_seeds, name, lam, grid
  c.loss.warmup_epochs = method.benchmark.warmup_epochs if method.benchmark else 0
  c.loss.settings = ml_collections.ConfigDict(settings or {})
  c.optim.name = "adam"
  c.lock()
  return c


@pytest.fixture(scope="module", name="reference")
def fixture_reference(tmp_path_factory):
  """An ERM run of seeds 0 and 1: the reference run of a method that reads one."""
  workdir = tmp_path_factory.mktemp("reference")
  loop.train_and_evaluate(tiny_config("erm", num_seeds=2), workdir)
  return workdir


def final_state(workdir) -> dict:
  """The raw tree of a run's last checkpoint (params, opt_state, extra, step)."""
  mngr = runs.checkpoint_manager(workdir)
  try:
    return mngr.restore(mngr.latest_step())
  finally:
    mngr.close()


def resume_from_first_epoch(workdir, to):
  """A copy of a finished 2-epoch run cut back to its first epoch (its last checkpoint, results
  and second metrics row removed), then trained again."""
  shutil.copytree(workdir, to)
  shutil.rmtree(to / "checkpoints" / "2")
  for name in ("results.json", "predictions.npz"):
    (to / name).unlink(missing_ok=True)
  rows = (to / "metrics.jsonl").read_text().splitlines()
  (to / "metrics.jsonl").write_text(rows[0] + "\n")
  config = runs.load_config(to)
  loop.train_and_evaluate(config, to)
  assert [json.loads(r)["epoch"] for r in (to / "metrics.jsonl").read_text().splitlines()] == [
      1, 2]


@pytest.mark.parametrize("name", TRAINED)
def test_registered_method_trains_replicas_and_resumes(name, request, tmp_path,
                                                       replicas_equal_single_runs):
  method = methods.get(name)
  settings = {}
  if method.reference:
    settings[method.reference] = str(request.getfixturevalue("reference"))
  make = lambda **kw: tiny_config(name, settings=settings, **kw)
  both, model, p_all = replicas_equal_single_runs(
      make, grid_of(method), tmp_path, lam_used=method.lam_means != "unused")

  # Every parameter the method holds trains (LfF's biased twin too).
  init = runs.init_state(both, model, runs.build(both)[1]).params
  trained = jax.tree_util.tree_flatten_with_path(p_all)[0]
  for (path, a), b in zip(trained, jax.tree_util.tree_leaves(init)):
    assert not np.allclose(np.asarray(a), np.asarray(b)), jax.tree_util.keystr(path)

  # Its state is checkpointed and restored: a resumed run ends where the straight one does.
  resume_from_first_epoch(tmp_path / "k4", tmp_path / "resumed")
  want, got = final_state(tmp_path / "k4"), final_state(tmp_path / "resumed")
  assert set(got["extra"]) == set(want["extra"])
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
