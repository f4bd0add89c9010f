"""Replicas in one program and data-parallel training give the numbers of separate single runs.

(Replica i of a num_seeds=2 run == the single run with seed i is in test_train.py.)
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ccmnist.train import loop
from ccmnist.train import parallel
from ccmnist.train import runs
from configs import cheater

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny(**overrides):
  c = cheater.get_config("tiny")
  c.update_from_flattened_dict({"train.epochs": 1, **overrides})
  return c


def max_abs_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_lam_grid_replica_equals_single_lam_run(tmp_path):
  """Grid point g of a lam_grid run is the single run with lam = lam_grid[g] (same seed)."""
  kw = {"loss.name": "consistency", "optim.lr": 0.05}
  grid = loop.train_and_evaluate(tiny(**kw, **{"loss.lam_grid": (0.0, 2.0)}), tmp_path / "grid")
  single = loop.train_and_evaluate(tiny(**kw, **{"loss.lam": 2.0}), tmp_path / "single")
  _, p_grid, _ = runs.load_run(tmp_path / "grid", replica=None)
  _, p_single, _ = runs.load_run(tmp_path / "single")
  p_g = [jax.tree_util.tree_map(lambda x, g=g: x[g], p_grid) for g in range(2)]
  same, other = max_abs_diff(p_g[1], p_single), max_abs_diff(p_g[0], p_single)
  assert same < 1e-5
  assert other > 1e-4 and other > 30 * same  # lambda matters, so the match is not vacuous.
  assert [r["lam"] for r in grid["replicas"]] == [0.0, 2.0]
  assert grid["grid"][1]["accuracy"]["test_hard"]["mean"] == pytest.approx(
      single["accuracy"]["test_hard"], abs=0.02)


def test_check_batch_size():
  parallel.check_batch_size(32, 4)
  with pytest.raises(ValueError, match="not a multiple of 4"):
    parallel.check_batch_size(30, 4)


def test_feed_gathers_the_rows_of_each_replica():
  """A fed batch [K, batch, ...] holds, for replica r, rows idx[r] of the host arrays."""
  split = {"images": np.arange(10 * 2 * 3).reshape(10, 2, 3), "labels": np.arange(10) * 7,
           "cf_images": np.zeros(10)}
  idx = np.array([[3, 1, 4, 1], [5, 9, 2, 6]])
  mesh = parallel.make_mesh()
  batch = parallel.feed(split, idx, parallel.batch_sharding(mesh), ("images", "labels"))
  assert set(batch) == {"images", "labels"}
  np.testing.assert_array_equal(batch["labels"], [[21, 7, 28, 7], [35, 63, 14, 42]])
  np.testing.assert_array_equal(batch["images"][1, 2], split["images"][2])
  assert batch["images"].shape == (2, 4, 2, 3)


def test_limit_in_flight_waits_for_the_step_max_before_the_last(monkeypatch):
  waited = []
  monkeypatch.setattr(parallel, "MAX_STEPS_IN_FLIGHT", 3)
  monkeypatch.setattr(jax, "block_until_ready", waited.append)
  launched = []
  for step in range(6):
    launched.append(step)
    parallel.limit_in_flight(launched)
  # After launching step s, step s - 3 has finished: never more than 3 steps queued.
  assert waited == [0, 1, 2]


_DP_SCRIPT = textwrap.dedent("""
    import json
    import re
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from ccmnist.train import loop, parallel, runs
    from configs import cheater

    def cfg(dp, batch=32):
      c = cheater.get_config("tiny")
      c.unlock()
      c.train.epochs, c.train.data_parallel, c.train.batch_size = 1, dp, batch
      c.num_seeds = 2  # Both replicas, each split over the devices.
      c.lock()
      return c

    out = sys.argv[1]
    single = loop.train_and_evaluate(cfg(False), out + "/single")
    dp = loop.train_and_evaluate(cfg(True), out + "/dp")
    _, p0, _ = runs.load_run(out + "/single", replica=None)
    _, p1, _ = runs.load_run(out + "/dp", replica=None)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(jax.tree_util.tree_leaves(p0), jax.tree_util.tree_leaves(p1)))
    try:
      loop.train_and_evaluate(cfg(True, batch=30), out + "/bad")
      bad = "no error"
    except ValueError as e:
      bad = str(e)
    c = cfg(True)
    model, tx, steps = runs.build(c)
    mesh = parallel.make_mesh()
    fn = parallel.make_train_step(mesh, **runs.step_kwargs(c, model, steps))
    state = parallel.put(runs.init_state(c, model, tx), parallel.replicated(mesh))
    data = {"images": jnp.zeros((512, 28, 28, 3), jnp.uint8),
            "labels": jnp.zeros(512, jnp.int32)}
    def conv_batches(batch):
      hlo = fn.lower(state, data, jnp.zeros((1, steps, batch), jnp.int32),
                     jnp.zeros(1)).compile().as_text()
      # The first conv's output, [batch, 14, 14, 8]: which batch sizes the program computes.
      return hlo, sorted({int(b) for b in re.findall(r"f32\\[(\\d+),14,14,8\\]", hlo)})
    hlo, batches = conv_batches(32)
    from ccmnist import speed
    data["cf_images"] = data["images"]
    from configs import common
    flops = [speed.TrainWorkload(speed.workload_config(common.train_config(None), "erm", 64),
                                 data=data, steps=1, data_parallel=dp).flops_per_step
             for dp in (False, True)]
    seeds_differ = float(np.max(np.abs(np.asarray(p1["Dense_0"]["bias"][0]
                                                  - p1["Dense_0"]["bias"][1]))))
    print(json.dumps({"devices": jax.device_count(), "diff": diff, "bad": bad,
                      "seeds_differ": seeds_differ,
                      "acc": [single["accuracy"], dp["accuracy"]],
                      "all_reduce": "all-reduce" in hlo, "conv_batches": batches,
                      "conv_batches_512": conv_batches(512)[1],
                      "bench_flops": flops}))
""")


def test_data_parallel_equals_one_device(tmp_path):
  """4 CPU devices, batch 32 split 8 per device, 2 replicas: same params as one device."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _DP_SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["devices"] == 4
  assert out["diff"] < 1e-5
  assert out["seeds_differ"] > 1e-3  # Two real replicas, not one copied.
  assert out["acc"][0] == pytest.approx(out["acc"][1], abs=0.011)
  assert "not a multiple of 4" in out["bad"]
  # The step really runs split: every conv sees 8 examples per device, gradients all-reduced.
  assert out["all_reduce"] and out["conv_batches"] == [8]
  # 512 = 128 per device, computed in passes of 64 as on one device (step.PASS_IMAGES).
  assert out["conv_batches_512"] == [64]
  # launch.speed --data_parallel counts every device's flops, not one device's share.
  one, split = out["bench_flops"]
  assert split == pytest.approx(one, rel=0.05)


_QUEUE_SCRIPT = textwrap.dedent("""
    import sys
    from ccmnist.train import loop
    from configs import cheater
    c = cheater.get_config("tiny")
    c.unlock()
    c.train.epochs, c.train.data_parallel, c.train.batch_size = 1, True, 8
    c.train.log_every_steps = 1000  # 64 steps with no sync but the loop's own bound.
    c.lock()
    loop.train_and_evaluate(c, sys.argv[1])
    print("finished")
""")


def test_data_parallel_epoch_without_sync_finishes(tmp_path):
  """2 host devices, 64 steps dispatched with no logging sync: more than the 32 programs XLA:CPU
  queues per device, which deadlocked the step's all-reduce on a 2-core machine before the loop
  bounded the queue (parallel.MAX_STEPS_IN_FLIGHT); XLA aborts a stuck all-reduce after 40 s."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _QUEUE_SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == "finished"
