"""Two processes on localhost train one run (jax.distributed, CPU collectives over gloo).

Each process runs `python -m launch.train --multihost ...` under a small driver that records
every file the process writes, creates, renames or deletes (Python audit hooks: `open` for
writing, os.rename/replace, os.remove, os.mkdir, os.rmdir, os.truncate, shutil.rmtree) into a log
outside the workdir, line by line, so a SIGKILLed process leaves its log too. Everything our code
writes goes through Python's file calls; only orbax's TensorStore writes array data from C++,
and that lies under checkpoints/, which process 1 may write anyway. Process 0's log is checked
to hold config.json, metrics, results and TensorBoard files: the hook sees those writes, so
their absence from process 1's log means process 1 did not make them.

Every subprocess has a deadline and both are killed in a finally.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from ccmnist.train import loop
from ccmnist.train import runs
from ccmnist.util import workdir as workdir_lib
from configs import cheater

REPO = pathlib.Path(__file__).resolve().parents[1]
DEADLINE_S = 240  # One two-process run; a hung collective fails the test instead of CI.
# The tiny config with a learning rate that moves the accuracies within 2 epochs.
OVERRIDES = {"optim.lr": 0.05}

_DRIVER = textwrap.dedent("""
    import json, os, runpy, sys, time

    log = open(os.environ["AUDIT_LOG"], "a", buffering=1)  # Opened before the hook: not logged.
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    PATHS = {"os.rename": 2, "os.remove": 1, "os.mkdir": 1, "os.rmdir": 1, "os.truncate": 1,
             "shutil.rmtree": 1, "os.link": 2, "os.symlink": 2}

    def hook(event, args):
      if event == "open":
        path, mode, flags = args
        writes = flags & WRITE if isinstance(flags, int) else any(c in str(mode) for c in "wax+")
        paths = [path] if writes else []
      else:
        paths = args[:PATHS.get(event, 0)]
      for p in paths:
        if isinstance(p, (str, bytes, os.PathLike)):
          log.write(json.dumps([event, os.path.abspath(os.fsdecode(p))]) + "\\n")

    hold = int(os.environ.get("HOLD_AT_EPOCH", "0"))
    if hold:  # Stop at the start of epoch `hold` until the test kills the process.
      from ccmnist.train import loop
      real = loop.epoch_orders
      def held(config, epoch, *args):
        if epoch == hold:
          open(os.environ["HOLD_MARKER"], "w").close()
          time.sleep(600)
        return real(config, epoch, *args)
      loop.epoch_orders = held
    sys.addaudithook(hook)
    sys.argv = ["launch.train", *sys.argv[1:]]
    runpy.run_module("launch.train", run_name="__main__", alter_sys=True)
""")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def tiny(**overrides):
  c = cheater.get_config("tiny")
  c.update_from_flattened_dict({**OVERRIDES, **overrides})
  return c


@pytest.fixture(scope="module", name="xla_cache")
def fixture_xla_cache(tmp_path_factory):
  """XLA's persistent compilation cache, shared by this module's processes: a rerun of a run
  compiles nothing."""
  return tmp_path_factory.mktemp("xla_cache")


def launch(workdir, logs, xla_cache, *, hold_at_epoch=0, local_devices=1) -> list:
  """Starts both processes of a two-process run of the tiny config on `workdir`, each with
  `local_devices` CPU devices; their logs go to `logs`."""
  # No cache prebuilt: both processes color the splits themselves, on their own CPU device.
  port = free_port()
  flags = [f"--workdir={workdir}", "--config=configs/cheater.py:tiny",
           "--config.train.data_parallel=True", "--multihost",
           f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
           "--cpu_collectives=gloo", *(f"--config.{k}={v}" for k, v in OVERRIDES.items())]
  env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
  env.update(JAX_PLATFORMS="cpu", HOLD_AT_EPOCH=str(hold_at_epoch),
             JAX_COMPILATION_CACHE_DIR=str(xla_cache),
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}")
  procs = []
  for i in range(2):
    env_i = dict(env, AUDIT_LOG=str(logs / f"writes_{i}.jsonl"),
                 HOLD_MARKER=str(logs / f"held_{i}"))
    with open(logs / f"stderr_{i}.txt", "w") as err:
      procs.append(subprocess.Popen(  # pylint: disable=consider-using-with
          [sys.executable, "-c", _DRIVER, *flags, f"--process_id={i}"], cwd=REPO, env=env_i,
          stdout=subprocess.DEVNULL, stderr=err))
  return procs


def stderr_tail(logs, i: int) -> str:
  """The end of process i's log, for a failure message."""
  return (logs / f"stderr_{i}.txt").read_text()[-3000:]


def finish(procs, logs) -> None:
  """Waits for both processes (bounded); each must exit 0."""
  for i, p in enumerate(procs):
    rc = p.wait(timeout=DEADLINE_S)
    assert rc == 0, f"process {i} exited {rc}:\n{stderr_tail(logs, i)}"


def kill(procs) -> None:
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGKILL)
      p.wait(timeout=30)


def written(logs, i: int, workdir) -> set:
  """Paths under `workdir`, relative to it, that process i wrote, created or removed."""
  root = os.path.abspath(workdir)
  path = logs / f"writes_{i}.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
  return {os.path.relpath(p, root) for _, p in rows if p == root or p.startswith(root + os.sep)}


def outside_checkpoints(paths: set) -> set:
  return {p for p in paths if p != "checkpoints" and not p.startswith("checkpoints" + os.sep)}


@pytest.fixture(scope="module", name="two")
def fixture_two(tmp_path_factory, xla_cache):
  """An uninterrupted two-process run: (workdir, logs)."""
  workdir, logs = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("two_logs")
  procs = launch(workdir, logs, xla_cache)
  try:
    t = time.perf_counter()
    finish(procs, logs)
    print(f"two-process run: {time.perf_counter() - t:.1f}s")
  finally:
    kill(procs)
  return workdir, logs


def params_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def metrics(workdir) -> list:
  return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(workdir, reference) -> None:
  """The same params up to float summation order, the same accuracies every epoch."""
  _, p, _ = runs.load_run(workdir)
  _, p_ref, _ = runs.load_run(reference)
  assert params_diff(p, p_ref) < 1e-5
  rows, rows_ref = metrics(workdir), metrics(reference)
  assert [r["epoch"] for r in rows] == [r["epoch"] for r in rows_ref] == [1, 2]
  for r, r_ref in zip(rows, rows_ref):
    assert r["accuracy"] == r_ref["accuracy"]
    np.testing.assert_allclose(r["train_loss"], r_ref["train_loss"], rtol=1e-5)
  results, results_ref = (json.loads((w / "results.json").read_text())
                          for w in (workdir, reference))
  assert results["accuracy"] == results_ref["accuracy"]


def test_two_processes_equal_one(two, tmp_path):
  """Batch 32 split 16 + 16 over two processes: the params and accuracies of one device."""
  workdir, _ = two
  loop.train_and_evaluate(tiny(), tmp_path / "one")
  assert runs.load_config(workdir).train.data_parallel and not tiny().train.data_parallel
  assert_same_run(workdir, tmp_path / "one")
  # Not vacuous: training moved the params away from their init and the accuracies with them.
  rows = metrics(workdir)
  assert rows[-1]["accuracy"]["test_easy"] != rows[0]["accuracy"]["test_easy"]
  _, p_two, _ = runs.load_run(workdir)
  p_init = runs.init_state(tiny(), *runs.build(tiny())[:2]).params
  assert params_diff(p_two, jax.tree_util.tree_map(lambda x: x[0], p_init)) > 1e-3


def test_killed_two_process_run_resumes_to_the_same_result(two, tmp_path, xla_cache):
  """Two processes of 2 CPU devices each (batch 8 per device), both SIGKILLed at the start of
  epoch 2, after epoch 1's checkpoint; rerun, they finish the run of `two`."""
  workdir, logs = tmp_path / "run", tmp_path / "logs"
  logs.mkdir()
  procs = launch(workdir, logs, xla_cache, hold_at_epoch=2, local_devices=2)
  try:
    deadline = time.monotonic() + DEADLINE_S
    while not all((logs / f"held_{i}").exists() for i in range(2)):
      for i, p in enumerate(procs):
        assert p.poll() is None, f"process {i} exited {p.returncode}:\n{stderr_tail(logs, i)}"
      assert time.monotonic() < deadline, "the run never reached epoch 2"
      time.sleep(0.1)
  finally:
    kill(procs)
  assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
  assert not (workdir / "results.json").exists()
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1"]
  assert [r["epoch"] for r in metrics(workdir)] == [1]
  first = {i: written(logs, i, workdir) for i in range(2)}
  for i in range(2):
    (logs / f"writes_{i}.jsonl").unlink()

  procs = launch(workdir, logs, xla_cache, local_devices=2)
  try:
    finish(procs, logs)
  finally:
    kill(procs)
  log0 = (logs / "stderr_0.txt").read_text()
  assert "2 of 4 devices local" in log0
  assert "Resumed from the checkpoint after epoch 1" in log0
  assert_same_run(workdir, two[0])
  # Process 0 rewrote metrics.jsonl on resuming; process 1 wrote no file in either leg.
  second = {i: written(logs, i, workdir) for i in range(2)}
  assert "metrics.jsonl" in second[0]
  assert not outside_checkpoints(first[1] | second[1]), sorted(first[1] | second[1])


def test_process_1_writes_only_checkpoints(two):
  workdir, logs = two
  by = {i: written(logs, i, workdir) for i in range(2)}
  assert not outside_checkpoints(by[1]), sorted(outside_checkpoints(by[1]))
  # The hook sees every kind of file the run writes: process 0 wrote them all.
  mine = outside_checkpoints(by[0])
  for name in ("config.json", "metrics.jsonl", "results.json", "predictions.npz"):
    assert name in mine, sorted(mine)
  assert any(p.startswith("tensorboard" + os.sep) for p in mine)
  assert any(p.startswith("epoch_predictions" + os.sep) for p in mine)
  # Both processes took part in the checkpoints (orbax writes each process's share).
  assert by[0] - mine and by[1]
  assert {p.name for p in workdir.iterdir()} == {
      ".lock", "config.json", "metrics.jsonl", "results.json", "predictions.npz", "tensorboard",
      "checkpoints", "epoch_predictions"}


def test_a_refused_workdir_stops_both_processes_at_once(tmp_path, xla_cache):
  """Process 0 refuses a workdir of another config: process 1 learns it and stops too, instead
  of waiting for process 0 in a collective."""
  workdir, logs = tmp_path / "other", tmp_path / "logs"
  logs.mkdir()
  workdir_lib.claim_workdir(tiny(**{"train.epochs": 3}), workdir)
  workdir_lib.release_workdir(workdir)
  before = {p.name: p.read_bytes() for p in workdir.iterdir()}
  procs = launch(workdir, logs, xla_cache)
  try:
    codes = [p.wait(timeout=60) for p in procs]
  finally:
    kill(procs)
  err0 = (logs / "stderr_0.txt").read_text().strip().splitlines()[-1]
  assert codes[0] == 2 and err0.startswith("error: ") and "different config" in err0, err0
  assert codes[1] != 0 and "Process 0 could not claim" in stderr_tail(logs, 1)
  assert {p.name: p.read_bytes() for p in workdir.iterdir()} == before
