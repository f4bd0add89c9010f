"""Faults, for real: processes killed with SIGKILL and resumed, two processes on one workdir, a
full disk, a read-only workdir, corrupt checkpoints and a corrupt split cache; the study's and the
debiasing benchmark's (both run by ccmnist/pipeline.py).

Every subprocess runs under a time limit and is killed when a test fails. They share one split
cache and one XLA compilation cache (set up by the `env` fixture), so a resumed process does not
recompile; the uninterrupted reference study starts first and runs while the shorter tests do.
"""

import hashlib
import json
import math
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ccmnist import study as study_lib
from ccmnist.data import splits as splits_lib
from ccmnist.util import workdir as workdir_lib
from configs import common as config_common
from configs import study as study_config
from configs import data as data_config

REPO = pathlib.Path(__file__).resolve().parents[1]
STUDY = "configs/study.py:tiny"
# The study's analyses on fewer models: kills and resumes are what is tested, not the models.
STUDY_ARGS = [f"--config={STUDY}", "--config.interpret.models=cheater,counterfactual",
              "--config.attack.models=cheater,counterfactual,counterfactual@0"]
TRAIN = ["--config=configs/cheater.py:tiny", "--config.train.epochs=3"]
# The benchmark, small: a plain baseline and a refit that needs its run, one protocol, 2 epochs.
ZOO = ["launch.zoo", "--config=configs/zoo.py:tiny", "--config.methods=erm,dfr",
       "--config.run_protocols=lff", "--config.project_to.run_protocols=lff",
       "--config.protocols.lff.train.epochs=2"]
SEED = 17  # Of the kill moments.
HOST = socket.gethostname()
# results.json keys that differ between two runs of one config: timings, dates, paths, machine.
SKIP_KEYS = {"generated", "environment", "stages", "config", "train_time_s", "timing", "curves",
             "runs_paths", "seconds", "note"}
# And of the benchmark's: what each run cost (its wall time and rates) and the projection.
ZOO_SKIP_KEYS = SKIP_KEYS | {"cost"}


# ---------------------------------------------------------------- helpers

class Proc:
  """`python -m <args>` in the repo, its stderr read line by line as it comes; killed at
  `limit_s`, and by `close` (or leaving a `with` block) if still running."""

  def __init__(self, args, env, *, limit_s: float, file_size_limit: int | None = None,
               at_write: tuple | None = None):
    self.args = args
    command = [sys.executable, "-m", *args]
    if at_write is not None:  # ('kill' or 'stop', pattern, n): _AT_WRITE at the Nth such write.
      action, pattern, n = at_write
      command = [sys.executable, "-c", _AT_WRITE, action, pattern, str(n), *args]
    if file_size_limit is not None:  # Set in the child itself: no fork of this threaded process.
      command = [sys.executable, "-c", _LIMITED, str(file_size_limit), *args]
      # Reads the XLA cache, but never writes it (JAX would leave a truncated entry there).
      env = dict(env, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1e9")
    self.popen = subprocess.Popen(
        command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    self.pid = self.popen.pid
    self.lines = []
    self.stage = None  # The study stage running, from its "[study i/n] stage NAME ..." line.
    self._timer = threading.Timer(limit_s, self.popen.kill)
    self._timer.start()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def wait_for(self, pattern: str, *, stage: str | None = None) -> bool:
    """Reads stderr until a line matches `pattern` (while study stage `stage` runs, if given);
    False if the process ends first."""
    for line in self.popen.stderr:
      self.lines.append(line)
      started = re.search(r"\] stage (\w+) \.\.\.$", line)
      if started:
        self.stage = started[1]
      if re.search(pattern, line) and (stage is None or self.stage == stage):
        return True
    return False

  def close(self) -> int:
    """Kills the process if it still runs; its exit status."""
    if self.popen.poll() is None and self.popen.returncode is None:
      try:
        self.popen.kill()
      except ProcessLookupError:
        pass
    return self.finish()

  def finish(self) -> int:
    """Reads the rest of stderr and waits for the exit; its exit status."""
    self.lines += self.popen.stderr.readlines()
    rc = self.popen.wait()
    self._timer.cancel()
    return rc

  @property
  def stderr(self) -> str:
    return "".join(self.lines)


def tree_hashes(root: pathlib.Path, *, skip=(workdir_lib.LOCK_FILE,)) -> dict:
  """{relative path: SHA-256} of every file under root, but the lock file."""
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def assert_intact(before: dict, root: pathlib.Path):
  """Every file of `before` is still there, unchanged (new files may have appeared)."""
  after = tree_hashes(root)
  changed = [path for path, digest in before.items() if after.get(path) != digest]
  assert not changed, changed


def assert_one_line_error(proc: Proc, rc: int, pattern: str):
  """Exit status 2, one line `error: ...` matching pattern, and no traceback through our code
  (TensorStore may print its own asyncio noise after a failed checkpoint read)."""
  assert rc == 2, proc.stderr[-3000:]
  errors = [line.rstrip("\n") for line in proc.lines if line.startswith("error: ")]
  assert len(errors) == 1 and re.search(pattern, errors[0]), proc.stderr[-3000:]
  assert not re.search(r'File "[^"]*/(ccmnist|launch)/', proc.stderr), proc.stderr[-3000:]


def compare_numbers(a, b, path="", out=None, *, skip=SKIP_KEYS) -> tuple:
  """(how many numbers, [differences]) of two results.json dicts, exact (NaN equals NaN),
  skipping the keys `skip`, keys of times and strings holding paths."""
  out = [] if out is None else out
  count = 0
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if k in skip or k.endswith(("_s", "seconds")) or "time" in k:
        continue
      if k not in a or k not in b:
        out.append(f"{path}.{k}: only in {'the reference' if k in a else 'the resumed run'}")
        continue
      count += compare_numbers(a[k], b[k], f"{path}.{k}", out, skip=skip)[0]
  elif isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      out.append(f"{path}: length {len(a)} vs {len(b)}")
    for i, (x, y) in enumerate(zip(a, b)):
      count += compare_numbers(x, y, f"{path}[{i}]", out, skip=skip)[0]
  elif isinstance(a, float) and isinstance(b, float):
    count = 1
    if not (a == b or (math.isnan(a) and math.isnan(b))):
      out.append(f"{path}: {a} vs {b}")
  elif isinstance(a, str) and isinstance(b, str) and "/" in a:
    pass  # A path: workdirs differ.
  else:
    count = int(isinstance(a, int) and not isinstance(a, bool))
    if a != b:
      out.append(f"{path}: {a!r} vs {b!r}")
  return count, out


# `python -c _LIMITED N MODULE ARGS...` runs MODULE as `python -m` would, its files unable to grow
# past N bytes, as on a full disk. SIGXFSZ is ignored (Python ignores it too), so write() fails
# with EFBIG instead of killing the process.
_LIMITED = """
import resource, runpy, signal, sys
n, module = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


# `python -c _AT_WRITE ACTION PATTERN N MODULE ARGS...` runs MODULE as `python -m` would, and at
# its Nth atomic write (util/io: a temporary file, then os.replace) of a file whose path matches
# PATTERN: "kill" SIGKILLs itself with the temporary file written and the target not yet replaced;
# "stop" prints "stopped at the write of PATH" and SIGSTOPs itself with the target in place. Either
# is an exact moment of a stage however fast the stage is, and however late the test reads the log
# (a loaded machine can leave the reader seconds behind a child that goes on working).
_AT_WRITE = """
import os, re, runpy, signal, sys
action, pattern, n, module = sys.argv[1], re.compile(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
seen, replace = [0], os.replace
def replace_or_signal(src, dst, *args, **kwargs):
  hit = bool(pattern.search(os.fspath(dst)))
  seen[0] += hit
  if hit and seen[0] == n and action == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
  out = replace(src, dst, *args, **kwargs)
  if hit and seen[0] == n and action == "stop":
    sys.stderr.write(f"stopped at the write of {os.fspath(dst)}\\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)
  return out
os.replace = replace_or_signal
sys.argv = [module, *sys.argv[5:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def make_unwritable(root: pathlib.Path) -> str:
  """Makes root and everything under it unwritable, for this user: chmod for a plain user,
  the immutable attribute for root (whom chmod does not stop); returns the undo command."""
  if os.geteuid() != 0:
    subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)
    return f"chmod -R u+w {root}"
  if shutil.which("chattr") is None or subprocess.run(
      ["chattr", "-R", "+i", str(root)], capture_output=True, check=False).returncode:
    pytest.skip("running as root without chattr +i: no way to make a directory read-only here")
  return f"chattr -R -i {root}"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """The environment of every subprocess: one split cache and one XLA compilation cache for
  this module (so resumes and repeats do not recompile), no named data directory."""
  base = tmp_path_factory.mktemp("faults")
  out = dict(os.environ, CCMNIST_CACHE=str(base / "cache"),
             JAX_COMPILATION_CACHE_DIR=str(base / "xla"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  out.pop("CCMNIST_DATA_DIR", None)
  return out


@pytest.fixture(scope="module")
def reference_study(env, tmp_path_factory):
  """An uninterrupted tiny study in its own process, started by the first test of the module
  (which does not wait for it) and waited for by the last, which needs it."""
  workdir = tmp_path_factory.mktemp("reference_study")
  proc = Proc(["launch.study", *STUDY_ARGS, f"--workdir={workdir}"], env, limit_s=900)
  yield proc, workdir
  proc.close()


@pytest.fixture(scope="module")
def reference_zoo(env, tmp_path_factory):
  """An uninterrupted small benchmark (ZOO) in its own process, started by the test that needs
  it and running beside it."""
  workdir = tmp_path_factory.mktemp("reference_zoo")
  proc = Proc([*ZOO, f"--workdir={workdir}"], env, limit_s=900)
  yield proc, workdir
  proc.close()


# ---------------------------------------------------------------- locks

@pytest.mark.usefixtures("reference_study")  # Starts it: it runs while the tests before it do.
def test_lock_is_reentrant_and_a_dead_holders_lock_is_taken_over(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from ccmnist.util import workdir; "
       "workdir.lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(120)",
       str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "locked\n"
    cfg = data_config.get_config("tiny")
    with pytest.raises(workdir_lib.WorkdirBusyError,
                       match=rf"in use by pid {holder.pid} on host {re.escape(HOST)} for \d+s "
                             r"\(`.*`\); wait for it to finish or stop it, or use another"):
      workdir_lib.claim_workdir(cfg, tmp_path)
    assert not (tmp_path / "config.json").exists()
  finally:
    holder.kill()
    holder.wait()
  # The kernel released the dead holder's lock: the file still names it, and is taken over.
  assert json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())["pid"] == holder.pid
  workdir_lib.claim_workdir(cfg, tmp_path)
  assert json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())["pid"] == os.getpid()
  workdir_lib.claim_workdir(cfg, tmp_path)  # Re-entrant: the same process claims again.
  workdir_lib.release_workdir(tmp_path)
  assert workdir_lib.holds_workdir(tmp_path)
  workdir_lib.release_workdir(tmp_path)
  assert not workdir_lib.holds_workdir(tmp_path)
  assert (tmp_path / workdir_lib.LOCK_FILE).read_text() == ""  # Released cleanly: not stale.
  # A lock file the config check never reads: the same config still resumes.
  workdir_lib.claim_workdir(cfg, tmp_path)
  workdir_lib.release_workdir(tmp_path)


def test_second_process_on_a_busy_workdir_is_refused_at_once(env, tmp_path):
  """A study holds DIR and, while it trains a run, DIR/runs/<run>: a second study (another
  stage) and a training of that run are refused with the holder's pid and host."""
  with Proc(["launch.study", f"--config={STUDY}", f"--workdir={tmp_path}"], env,
            limit_s=300) as first:
    assert first.wait_for(r"Data ready", stage="cheater"), first.stderr[-3000:]
    os.kill(first.pid, signal.SIGSTOP)  # Holds both locks, and does nothing more.
    others = [Proc(["launch.study", f"--config={STUDY}", "--config.only=attack",
                    f"--workdir={tmp_path}"], env, limit_s=120),
              Proc(["launch.train", *TRAIN, f"--workdir={tmp_path / 'runs' / 'cheater'}"], env,
                   limit_s=120)]
    for proc in others:
      with proc:
        assert_one_line_error(
            proc, proc.finish(), rf"error: {tmp_path}\S* is in use by pid {first.pid} on host "
            rf"{re.escape(HOST)} for \d+[sm].*; wait for it to finish or stop it, or use another "
            "--workdir")
  # SIGKILLed: its locks are stale, and this process takes DIR over at once.
  workdir_lib.lock_workdir(tmp_path)
  workdir_lib.release_workdir(tmp_path)


# ---------------------------------------------------------------- a full disk, a read-only dir

def test_full_disk_and_read_only_workdir_give_one_line_and_keep_earlier_outputs(
    env, tmp_path, monkeypatch):
  monkeypatch.setenv("CCMNIST_CACHE", env["CCMNIST_CACHE"])
  study_lib.make_data(data_config.get_config("tiny").data, tmp_path)  # The earlier outputs.
  before = tree_hashes(tmp_path)
  assert "data/train.npz" in before and (tmp_path / "data" / "train.npz").stat().st_size > 65536
  args = ["launch.make_data", "--config=configs/data.py:tiny", f"--workdir={tmp_path}"]
  with Proc(args, env, limit_s=120, file_size_limit=65536) as proc:
    assert_one_line_error(proc, proc.finish(), r"cannot write \S+/data/\w+\.npz: the file would "
                          r"exceed the file-size limit .*; raise the limit or choose a --workdir")
  assert_intact(before, tmp_path)
  assert tree_hashes(tmp_path).keys() == before.keys()  # No temporary file left behind.
  undo = make_unwritable(tmp_path)
  try:
    with Proc(args, env, limit_s=120) as proc:
      assert_one_line_error(proc, proc.finish(), r"cannot write \S+: (permission denied|operation "
                            r"not permitted|the file system is read-only); choose a --workdir")
  finally:
    subprocess.run(undo.split(), check=True)
  assert tree_hashes(tmp_path) == before


# ---------------------------------------------------------------- training: kill, disk, checkpoints

def _results(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def _corrupt_checkpoint(step_dir: pathlib.Path):
  """Truncates every array data file of an orbax checkpoint to half its length."""
  data = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
  assert data, list(step_dir.rglob("*"))
  for p in data:
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])


def test_training_killed_disk_full_and_corrupt_checkpoints(env, tmp_path):
  """One run through every training fault: killed after epoch 2; resumed on a full disk (one line,
  earlier outputs intact); its latest checkpoint corrupted (the one before is used); resumed to
  the numbers of an uninterrupted run. Every checkpoint corrupt: one line saying what to do."""
  ref, run, lost = tmp_path / "ref", tmp_path / "run", tmp_path / "lost"
  with Proc(["launch.train", *TRAIN, f"--workdir={ref}"], env, limit_s=180) as reference:
    with Proc(["launch.train", *TRAIN, f"--workdir={run}"], env, limit_s=180) as proc:
      assert proc.wait_for(r"\] epoch 2: "), proc.stderr[-3000:]
      proc.close()  # SIGKILL, with checkpoints 1 and 2 on disk.
    assert reference.finish() == 0, reference.stderr[-3000:]
  assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
  shutil.copytree(run, lost)

  before = tree_hashes(run)
  with Proc(["launch.train", *TRAIN, f"--workdir={run}"], env, limit_s=180,
            file_size_limit=16384) as proc:
    assert_one_line_error(proc, proc.finish(), r"(File too large|file-size limit).*raise the "
                          r"limit or choose a --workdir")
    assert "Taking over the lock" in proc.stderr  # Left by the process killed above.
  assert_intact(before, run)
  assert not (run / "results.json").exists()

  _corrupt_checkpoint(run / "checkpoints" / "2")
  with Proc(["launch.train", *TRAIN, f"--workdir={run}"], env, limit_s=180) as proc:
    assert proc.finish() == 0, proc.stderr[-3000:]
    assert "Resumed from the checkpoint after epoch 1" in proc.stderr, proc.stderr[-3000:]
  count, diffs = compare_numbers(_results(ref), _results(run))
  assert count > 10 and not diffs, diffs

  for step in ("1", "2"):
    _corrupt_checkpoint(lost / "checkpoints" / step)
  before = tree_hashes(lost)
  with Proc(["launch.train", *TRAIN, f"--workdir={lost}"], env, limit_s=180) as proc:
    assert_one_line_error(proc, proc.finish(),
                          r"[Cc]heckpoint.*; .*delete \S+checkpoints\S* and rerun")
  assert_intact(before, lost)


# ---------------------------------------------------------------- the split cache

def test_corrupt_split_cache_is_rebuilt_and_a_killed_build_leaves_nothing(monkeypatch, tmp_path):
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path))
  cfg = config_common.data_config("tiny")
  first = splits_lib.get_splits(cfg)
  entry = tmp_path / "splits" / splits_lib.cache_key(cfg)
  done = json.loads((entry / "done").read_text())
  assert set(done["sha256"]) == set(first)
  blob = bytearray((entry / "train.npz").read_bytes())
  blob[len(blob) // 2] ^= 0xFF  # Inside the images: np.load alone would not notice.
  (entry / "train.npz").write_bytes(bytes(blob))
  builds = []
  build = splits_lib.build_splits
  monkeypatch.setattr(splits_lib, "build_splits", lambda c: builds.append(1) or build(c))
  again = splits_lib.get_splits(cfg)
  assert builds == [1]
  for name in first:
    for key in first[name]:
      np.testing.assert_array_equal(first[name][key], again[name][key])
  assert json.loads((entry / "done").read_text())["sha256"] == done["sha256"]  # Same bytes.
  splits_lib.get_splits(cfg)
  assert builds == [1]  # Good again: read from the cache.

  # A build killed half way (its temporary directory left, its pid dead) is cleaned up by the
  # next build, and never read as an entry.
  dead = subprocess.Popen(["true"])
  dead.wait()
  cfg.seed = 1
  key = splits_lib.cache_key(cfg)
  stale = tmp_path / "splits" / f".{key}.tmp-{HOST}-{dead.pid}"
  stale.mkdir()
  (stale / "train.npz").write_bytes(b"partial")
  interrupted = []

  def fail_after_one(path, split):
    if interrupted:
      raise KeyboardInterrupt  # As if stopped while writing the second file.
    interrupted.append(path)
    splits_lib.io.write_npz(path, **split)
  monkeypatch.setattr(splits_lib, "save_split", fail_after_one)
  with pytest.raises(KeyboardInterrupt):
    splits_lib.get_splits(cfg)
  assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == [entry.name]
  monkeypatch.undo()
  monkeypatch.setenv("CCMNIST_CACHE", str(tmp_path))
  splits_lib.get_splits(cfg)
  assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == sorted([entry.name, key])


# ---------------------------------------------------------------- the study killed at random

# Where a study is killed: a line of its log while a stage runs, then a random delay.
TRAIN_MOMENTS = {
    "gradient_penalty": r"\] epoch 1: ",  # After its first checkpoint.
    "counterfactual": r"Data ready",  # Before any checkpoint.
    "color_gradient_penalty": r"epoch 2/\d+ step",
}
CONTROL_MOMENTS = {"erm_adam": r"Data ready", "erm_momentum": r"Data ready"}
ANALYSIS_MOMENTS = {
    "evaluate": r"eval of \S+runs/(gradient_penalty|counterfactual)",
    "interpret": r"featviz \w+ conv1",
    "attack": r"minimal eps",
}


def kill_moments(seed: int) -> list:
  """[(stage, line pattern, delay_s)] in stage order: two debiasing runs and one control drawn
  with `seed`, and every analysis stage, each killed a random delay after its line."""
  rng = random.Random(seed)
  chosen = {*rng.sample(sorted(TRAIN_MOMENTS), 2), rng.choice(sorted(CONTROL_MOMENTS)),
            *ANALYSIS_MOMENTS}
  moments = {**TRAIN_MOMENTS, **CONTROL_MOMENTS, **ANALYSIS_MOMENTS}
  stages = study_lib.stage_table(study_config.get_config("tiny"))
  return [(stage, moments[stage], rng.uniform(0.0, 0.3)) for stage in stages
          if stage in chosen]


def test_study_killed_at_random_moments_resumes_to_the_same_numbers(env, reference_study,
                                                                      tmp_path):
  args = ["launch.study", *STUDY_ARGS, f"--workdir={tmp_path}"]
  landed = []
  for stage, pattern, delay in kill_moments(SEED):
    with Proc(args, env, limit_s=300) as proc:
      if landed:  # The previous process was killed holding the study workdir.
        assert proc.wait_for(r"Taking over the lock of \S+: pid \d+"), proc.stderr[-3000:]
      assert proc.wait_for(pattern, stage=stage), (stage, proc.stderr[-3000:])
      time.sleep(delay)
      proc.close()
      landed.append(re.findall(r"\] stage (\w+) \.\.\.$", proc.stderr, re.M)[-1])
  for _ in range(2):  # Resumed until done.
    with Proc(args, env, limit_s=300) as proc:
      rc = proc.finish()
    if rc == 0:
      break
  assert rc == 0, proc.stderr[-3000:]
  ref_proc, ref_dir = reference_study
  assert ref_proc.finish() == 0, ref_proc.stderr[-3000:]
  count, diffs = compare_numbers(_results(ref_dir), _results(tmp_path))
  assert not diffs, diffs[:50]
  assert count > 1000
  assert set(landed) & {*TRAIN_MOMENTS, *CONTROL_MOMENTS} and set(landed) & {*ANALYSIS_MOMENTS}
  print(f"\n{len(landed)} kills (stages {landed}), {len(landed)} resumes; {count} numbers of "
        "results.json equal to the uninterrupted run's")


# ---------------------------------------------------------------- the benchmark, over many sittings

def zoo_sittings(seed: int, workdir: pathlib.Path) -> list:
  """[(stage, how)] in stage order, where how is ('stop', pattern, n): stopped once its Nth atomic
  write of a file matching pattern is in place, then killed, or ('kill', pattern, n): killed at
  that write (before the rename); between them, a sitting on a full disk and one on a read-only
  workdir, each of which must stop with one line."""
  rng = random.Random(seed)
  top = re.escape(str(workdir))
  return [
      ("train", ("stop", r"/erm/metrics\.jsonl$", 1)),  # In the ERM run, after its first epoch.
      ("train", ("stop", r"/erm/benchmark_time\.json$", 1)),  # Between the two runs.
      ("train", ("full disk",)),
      ("train", ("read-only",)),
      ("evaluate", ("kill", r"/benchmark_eval\.json$", rng.choice([1, 2]))),
      ("select", ("kill", rf"^{top}/selection\.json$", 1)),
      # The report, or its second writing (for its own stage time).
      ("report", ("kill", *rng.choice([(rf"^{top}/results\.json$", 1),
                                        (rf"^{top}/benchmark\.md$", 1),
                                        (rf"^{top}/results\.json$", 2)]))),
  ]


def test_benchmark_killed_full_disk_read_only_and_busy_resumes_to_the_same_numbers(
    env, reference_zoo, tmp_path):
  """The benchmark over many sittings, none checked by hand: killed inside a training run,
  between runs, in evaluate, select and report; stopped with one line by a full disk and a
  read-only workdir (every file before intact); a second process on its busy workdir refused;
  then resumed to the numbers of an uninterrupted run."""
  args = [*ZOO, f"--workdir={tmp_path}"]
  killed, stale = [], False  # stale: the sitting before was killed holding the workdir.
  for stage, how in zoo_sittings(SEED, tmp_path):
    if how[0] in ("full disk", "read-only"):
      stale = False
      before = tree_hashes(tmp_path)
      try:
        undo = make_unwritable(tmp_path) if how[0] == "read-only" else None
      except pytest.skip.Exception:
        continue  # No way to make a directory read-only here: the other sittings still count.
      try:
        with Proc(args, env, limit_s=300,
                  file_size_limit=16384 if how[0] == "full disk" else None) as proc:
          assert_one_line_error(
              proc, proc.finish(),
              r"(File too large|file-size limit).*raise the limit or choose a --workdir"
              if undo is None else r"cannot write \S+: (permission denied|operation not "
              r"permitted|the file system is read-only); choose a (writable )?--workdir")
      finally:
        if undo is not None:
          subprocess.run(undo.split(), check=True)
      assert_intact(before, tmp_path)
      continue
    with Proc(args, env, limit_s=300, at_write=how if how[0] in ("kill", "stop") else None) as proc:
      if stale:
        assert proc.wait_for(r"Taking over the lock of \S+: pid \d+"), proc.stderr[-3000:]
      if how[0] == "stop":
        assert proc.wait_for(r"^stopped at the write of ", stage=stage), (stage,
                                                                           proc.stderr[-3000:])
        if not killed:  # Stopped holding the workdir: a second benchmark there is refused.
          with Proc(args, env, limit_s=120) as second:
            assert_one_line_error(
                second, second.finish(), rf"error: {tmp_path} is in use by pid {proc.pid} on "
                rf"host {re.escape(HOST)} for \d+[sm].*; wait for it to finish or stop it, or "
                "use another --workdir")
        proc.close()
      rc = proc.finish()
    assert rc == -signal.SIGKILL, (stage, how, rc, proc.stderr[-3000:])
    landed = re.findall(r"\] stage (\w+) \.\.\.$", proc.stderr, re.M)[-1]
    assert landed == stage, (stage, how, proc.stderr[-3000:])  # Killed where it was meant.
    killed.append(stage)
    stale = True
  with Proc(args, env, limit_s=300) as proc:
    assert proc.finish() == 0, proc.stderr[-3000:]
    assert "Taking over the lock" in proc.stderr
  ref_proc, ref_dir = reference_zoo
  assert ref_proc.finish() == 0, ref_proc.stderr[-3000:]
  count, diffs = compare_numbers(_results(ref_dir), _results(tmp_path), skip=ZOO_SKIP_KEYS)
  assert not diffs, diffs[:50]
  assert count > 100
  assert (tmp_path / "benchmark.md").read_text().split("## Cost")[0] == (
      ref_dir / "benchmark.md").read_text().split("## Cost")[0]
  print(f"\n{len(killed)} kills ({killed}), resumed; {count} numbers of results.json equal to "
        "the uninterrupted run's")


def test_two_processes_sharing_a_workdir_finish_the_benchmark_of_one(env, reference_zoo,
                                                                     tmp_path):
  """Two --share_workdir processes on one workdir (ZOO at two ratios: two independent ERM runs,
  each with a refit that needs it) each train what the other does not hold, train no run twice,
  and the last writes a report whose 5% cell equals the uninterrupted one-process run's."""
  args = [*ZOO, "--config.ratios=0.05,0.02", f"--workdir={tmp_path}", "--share_workdir"]
  with Proc(args, env, limit_s=400) as first, Proc(args, env, limit_s=400) as second:
    rcs = first.finish(), second.finish()
  logs = first.stderr + second.stderr
  assert rcs == (0, 0), logs[-3000:]
  trained = re.findall(r"\[benchmark share\] (\S+) trained in", logs)
  assert sorted(trained) == sorted(set(trained)) and len(trained) == 4, trained
  for proc in (first, second):
    assert re.search(r"\[benchmark share\] \S+ trained in", proc.stderr), proc.stderr[-3000:]
  ref_proc, ref_dir = reference_zoo
  assert ref_proc.finish() == 0, ref_proc.stderr[-3000:]
  ref, ours = _results(ref_dir)["runs"], _results(tmp_path)["runs"]
  cell = [k for k in ref if "/rho0.95/" in k]
  assert cell and all(k in ours for k in cell), (sorted(ref), sorted(ours))
  count, diffs = compare_numbers({k: ref[k] for k in cell}, {k: ours[k] for k in cell},
                                 skip=ZOO_SKIP_KEYS)
  assert not diffs, diffs[:50]
  assert count > 20
  assert any("/rho0.98/" in k and ours[k].get("selection") for k in ours), sorted(ours)
