"""Bad input, each checked for a one-line error that says what is wrong and how to fix it, and
that nothing already written changed (every file of the workdir hashed before and after).

Most go through the library (fast); a handful through the real command line, in subprocesses
started together, for the one-line `error: ...` output and exit status 2 without a traceback.
"""

import gzip
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from ccmnist import study
from ccmnist.attacks import run as attack_run
from ccmnist.data import mnist
from ccmnist.data import splits as splits_lib
from ccmnist.eval import run as eval_run
from ccmnist.train import loop
from ccmnist.train import parallel
from ccmnist.util import workdir as workdir_lib
from ccmnist.zoo import stages as zoo_stages
from configs import attack as attack_config
from configs import cheater
from configs import common as config_common
from configs import study as study_config
from configs import zoo as zoo_config

REPO = pathlib.Path(__file__).resolve().parents[1]
# How a message says what to do: a choice, a bound, or an action.
FIX = (r"use one of|known \w+: |must (lie in|be)|use >=|>= \d|lower |pick |set config|"
       r"use a new --workdir|delete it|supply|put all four|pass the --workdir|run (it|them) first|"
       r"--config\.only|choose|check its spelling")


def tree_hashes(root: pathlib.Path) -> dict:
  """{relative path: SHA-256} of every file under root (the lock file's content aside: it
  records who holds the workdir, not what was computed)."""
  root = pathlib.Path(root)
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*"))
          if p.is_file() and p.name != workdir_lib.LOCK_FILE}


def intact(before: dict, workdir) -> bool:
  """Whether every file of `before` (tree_hashes) is still in workdir, unchanged."""
  after = tree_hashes(workdir)
  return {k: after.get(k) for k in before} == before


def check_error(call, workdir, exc_type, what: str, fix: str = FIX) -> str:
  """call() raises exc_type with a one-line message matching `what` and `fix`; every file that
  was in workdir is still there, unchanged. Returns the message."""
  before = tree_hashes(workdir)
  with pytest.raises(exc_type) as e:
    call()
  message = str(e.value)
  assert "\n" not in message, message
  assert re.search(what, message), message
  assert re.search(fix, message), message
  assert intact(before, workdir)
  return message


def tiny(**overrides):
  """The tiny cheater config, one epoch, with overrides like {'train.epochs': 3}."""
  c = cheater.get_config("tiny")
  c.update_from_flattened_dict({"train.epochs": 1, **overrides})
  return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished tiny training workdir: the outputs a bad input must leave alone."""
  workdir = tmp_path_factory.mktemp("trained")
  loop.train_and_evaluate(tiny(), workdir)
  assert (workdir / "results.json").exists()
  return workdir


# ---------------------------------------------------------------- training configs

TRAIN_CASES = {
    "rho above 1": ({"data.rho_train": 1.5}, r"config\.data\.rho_train.*got 1\.5"),
    "rho below 0": ({"data.rho_test_hard": -0.1}, r"config\.data\.rho_test_hard.*got -0\.1"),
    "unknown model": ({"model.name": "resnet"}, r"Unknown model 'resnet'"),
    "unknown loss": ({"loss.name": "l2"}, r"Unknown loss 'l2'"),
    "unknown optimizer": ({"optim.name": "lion"}, r"Unknown optimizer 'lion'"),
    "palette of 9 colors": ({"data.palette": ((255, 0, 0),) * 9},
                            r"holds 9 colors for 10 classes; set config\.data\.color_class"),
    "palette above 255": ({"data.palette": ((256, 0, 0),) + ((0, 0, 0),) * 9},
                          r"[Pp]alette values"),
    "zero epochs": ({"train.epochs": 0}, r"config\.train\.epochs"),
    "negative batch size": ({"train.batch_size": -8}, r"config\.train\.batch_size"),
    "negative lambda in the grid": ({"loss.lam_grid": (0.1, -0.5)}, r"-0\.5"),
    "zero seeds": ({"num_seeds": 0}, r"config\.num_seeds"),
    "unknown coloring": ({"data.coloring": "stripes"}, r"'stripes'"),
    "negative learning rate": ({"optim.lr": -1.0}, r"config\.optim\.lr"),
}


@pytest.mark.parametrize("overrides,what", TRAIN_CASES.values(), ids=TRAIN_CASES.keys())
def test_bad_training_config_leaves_a_finished_run_alone(trained, overrides, what):
  check_error(lambda: loop.train_and_evaluate(tiny(**overrides), trained), trained, ValueError,
              what)


@pytest.mark.parametrize("overrides,what", TRAIN_CASES.values(), ids=TRAIN_CASES.keys())
def test_bad_training_config_writes_nothing_in_a_new_workdir(tmp_path, overrides, what):
  """Refused before the workdir is claimed: no config.json that would refuse the fixed config."""
  check_error(lambda: loop.train_and_evaluate(tiny(**overrides), tmp_path), tmp_path,
              ValueError, what)
  assert not any(tmp_path.iterdir())


def test_batch_not_divisible_by_the_devices(tmp_path):
  check_error(lambda: parallel.check_batch_size(33, 2), tmp_path, ValueError,
              r"batch_size=33 is not a multiple of 2", r"pick a batch size divisible by 2")


def test_workdir_of_another_config(trained):
  check_error(lambda: loop.train_and_evaluate(tiny(**{"train.epochs": 3}), trained), trained,
              workdir_lib.WorkdirConfigError, r"different config \(train\.epochs: 1 \(workdir\) "
              r"vs 3 \(now\)\)", r"use a new --workdir, or rerun with the same config")


def test_a_workdir_resumes_across_a_logging_only_setting(trained):
  """train.grad_norm changes what a run logs, not what it computes: a finished run is read back
  under either value, and any other change is still refused."""
  before = (trained / "results.json").read_text()
  c = tiny()
  with c.unlocked():
    c.train.grad_norm = False
  assert loop.train_and_evaluate(c, trained) == json.loads(before)
  assert workdir_lib.diff_configs({"train": {"grad_norm": True, "epochs": 1}},
                                  {"train": {"epochs": 2}}) == [
      "train.epochs: 1 (workdir) vs 2 (now)"]


def test_nan_loss_names_the_step(tmp_path):
  check_error(lambda: loop.train_and_evaluate(tiny(**{"optim.lr": 1e12}), tmp_path), tmp_path,
              loop.NonFiniteLossError, r"Loss became nan at step \d+ \(replica 0\)",
              r"lower config\.optim\.lr")


def test_not_a_training_workdir(tmp_path):
  check_error(lambda: eval_run.evaluate_training_run(tmp_path), tmp_path, FileNotFoundError,
              r"config\.json not found: \S+ is not a training workdir",
              r"pass the --workdir of a training run")
  assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- variants, studies, attacks

@pytest.mark.parametrize("module", [study_config, cheater, attack_config])
def test_unknown_variant(module):
  check_error(lambda: module.get_config("huge"), ".", ValueError,
              r"Unknown config variant 'huge'", r"use a comma-separated list of \(size: ")


STUDY_CASES = {
    "unknown method": ("attack.models", "cheater,resnet", r"Unknown run 'resnet'",
                       r"known runs: \("),
    "unknown stage": ("only", "cheater,nonsense", r"unknown stages \['nonsense'\]",
                      r"stages: data, cheater"),
    "bad lambda of a method": ("interpret.models", "counterfactual@0.3",
                               r"lambda 0\.3 is not in the run's lambda grid",
                               r"lambda grid \(0\.0, "),
}


@pytest.mark.parametrize("field,value,what,fix", STUDY_CASES.values(), ids=STUDY_CASES.keys())
def test_bad_study_config_writes_nothing(tmp_path, field, value, what, fix):
  """The choices it lists are the fix."""
  cfg = study_config.get_config("tiny")
  cfg.update_from_flattened_dict({field: value})
  check_error(lambda: study.run_study(cfg, tmp_path), tmp_path, ValueError, what, fix)
  assert not any(tmp_path.iterdir())


def test_only_a_stage_whose_inputs_do_not_exist_says_what_to_run_first(tmp_path):
  cfg = study_config.get_config("tiny")
  cfg.only = "attack"
  check_error(lambda: study.run_study(cfg, tmp_path), tmp_path, ValueError,
              r"stage attack needs .*cheater", r"--config\.only=\S*cheater")


ZOO_CASES = {
    "unknown stage": ("only", "train,nonsense", r"unknown stages \['nonsense'\]",
                      r"stages: train, evaluate, select, analyse, report"),
    "unknown method": ("methods", "erm,nonsense", r"\['nonsense'\], not entries of config\.zoo",
                       r"its entries: balanced_sampling, "),
    "ratio outside (0, 1)": ("ratios", (0.05, 1.5), r"config\.ratios holds 1\.5",
                             r"lies in \(0, 1\)"),
}


@pytest.mark.parametrize("field,value,what,fix", ZOO_CASES.values(), ids=ZOO_CASES.keys())
def test_bad_benchmark_config_writes_nothing(tmp_path, field, value, what, fix):
  cfg = zoo_config.get_config("tiny")
  with cfg.unlocked():
    cfg[field] = value
  check_error(lambda: zoo_stages.run_zoo(cfg, tmp_path), tmp_path, ValueError, what, fix)
  assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("only,first", [("evaluate", "train"), ("select,report", "evaluate"),
                                        ("report", "select")])
def test_benchmark_stage_whose_inputs_do_not_exist_says_what_to_run_first(tmp_path, only, first):
  cfg = zoo_config.get_config("tiny")
  cfg.only = only
  stage = only.split(",")[0]
  check_error(lambda: zoo_stages.run_zoo(cfg, tmp_path), tmp_path, ValueError,
              rf"^stage {stage} needs the outputs of stage {first}, which ",
              rf"run it first \(--config\.only={first}\), or together "
              rf"\(--config\.only={first},{only}\)")
  assert not (tmp_path / "runs").exists() and not (tmp_path / "stages.json").exists()


ATTACK_CASES = {
    "unknown attack norm": ({"pgd.norm": "l3"}, r"config\.pgd: Unknown norm 'l3'"),
    "negative eps": ({"pgd.eps": -1.0}, r"eps.*got -1\.0"),
    "negative steps": ({"pgd.steps": -1}, r"steps.*got -1"),
    "unknown success criterion": ({"success.criterion": "vibes"}, r"'vibes'"),
}


@pytest.mark.parametrize("overrides,what", ATTACK_CASES.values(), ids=ATTACK_CASES.keys())
def test_bad_attack_config_leaves_its_runs_and_output_alone(trained, tmp_path, overrides, what):
  cfg = attack_config.get_config("tiny")
  cfg.update_from_flattened_dict(overrides)
  before = tree_hashes(trained)
  check_error(lambda: attack_run.attack_runs({"cheater": str(trained)}, cfg, tmp_path),
              tmp_path, ValueError, what)
  assert tree_hashes(trained) == before and not any(tmp_path.iterdir())


# ---------------------------------------------------------------- MNIST in a named directory

def _idx(n: int, images: bool) -> bytes:
  shape = (n, 28, 28) if images else (n,)
  header = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
  return header + bytes(n * 784 if images else n)


@pytest.fixture(name="fake_mnist")
def fixture_fake_mnist(tmp_path, monkeypatch):
  """A directory of four small, valid stand-in MNIST files (their sizes and checksums made the
  expected ones), named by config.data.data_dir; returns (directory, data config)."""
  directory = tmp_path / "mnist"
  directory.mkdir()
  sums = {}
  for name in mnist.SHA256:
    blob = _idx(6 if name.startswith("train") else 4, "images" in name)
    (directory / name).write_bytes(blob)
    sums[name] = hashlib.sha256(blob).hexdigest()
  monkeypatch.setattr(mnist, "SHA256", sums)
  monkeypatch.setattr(mnist, "NUM_EXAMPLES", {"train": 6, "test": 4})
  monkeypatch.delenv("CCMNIST_DATA_DIR", raising=False)
  cfg = config_common.data_config("tiny")
  cfg.update(dict(source="mnist", data_dir=str(directory), train_size=4, val_size=0,
                  val_unbiased_size=0, test_size=4))
  mnist.check_named_dir(str(directory))  # The good directory passes.
  return directory, cfg


def _spoil(path: pathlib.Path, how: str):
  blob = path.read_bytes()
  if how == "missing":
    path.unlink()
  elif how == "truncated":
    path.write_bytes(blob[:-100])
  elif how == "gzip-corrupt":
    path.unlink()
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(blob)[:-20])
  elif how == "wrong checksum":
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))


MNIST_CASES = {
    "missing": r"data_dir = \S+ lacks t10k-labels-idx1-ubyte \(raw or \.gz\)",
    "truncated": r"t10k-labels-idx1-ubyte: 0?\d+ bytes, but MNIST's t10k-labels-idx1-ubyte has",
    "gzip-corrupt": r"t10k-labels-idx1-ubyte\.gz: not a valid gzip file",
    "wrong checksum": r"t10k-labels-idx1-ubyte: SHA-256 \w+ does not match",
}


@pytest.mark.parametrize("how,what", MNIST_CASES.items(), ids=MNIST_CASES.keys())
def test_bad_mnist_file_in_a_named_directory(fake_mnist, tmp_path, monkeypatch, how, what):
  """Refused even when the split cache holds this data config (it is checked anyway)."""
  directory, cfg = fake_mnist
  monkeypatch.setattr(splits_lib, "build_splits", lambda c: pytest.fail("not refused"))
  _spoil(directory / "t10k-labels-idx1-ubyte", how)
  check_error(lambda: splits_lib.get_splits(cfg), tmp_path, mnist.MnistError, what)


def test_named_directory_wins_over_a_good_cache(fake_mnist, tmp_path, monkeypatch):
  """A bad named directory is an error although the cache holds good files."""
  directory, _ = fake_mnist
  cache = tmp_path / "cache"
  cache.mkdir()
  for p in directory.iterdir():
    cache.joinpath(p.name).write_bytes(p.read_bytes())
  monkeypatch.setenv("CCMNIST_CACHE", str(cache))
  assert mnist.load("test", use_tfds=False, use_mirror=False)[0].shape == (4, 28, 28)
  _spoil(directory / "train-images-idx3-ubyte", "truncated")
  monkeypatch.setenv("CCMNIST_DATA_DIR", str(directory))
  with pytest.raises(mnist.MnistError, match=r"train-images-idx3-ubyte: \d+ bytes"):
    mnist.load("test", use_tfds=False, use_mirror=False)
  monkeypatch.setenv("CCMNIST_DATA_DIR", str(tmp_path / "nowhere"))
  with pytest.raises(mnist.MnistError, match=r"\$CCMNIST_DATA_DIR = \S+nowhere is not a "
                     "directory; fix the path, or unset"):
    mnist.load("test", use_tfds=False, use_mirror=False)


# ---------------------------------------------------------------- the command line

def _cli_cases(tmp: pathlib.Path, trained: pathlib.Path) -> dict:
  """{name: (argv after -m, extra environment, the workdir, what the error line says)}."""
  only_train = tmp / "only_train_images"
  only_train.mkdir()
  (only_train / "train-images-idx3-ubyte").write_bytes(b"not mnist")  # The case.
  garbage = tmp / "garbage"
  garbage.mkdir()
  for name in mnist.SHA256:
    (garbage / name).write_bytes(b"0123456789")
  dirs = {name: tmp / name for name in ("md1", "md2", "variant", "field", "eval", "dp", "nan",
                                        "only", "zoo_only")}
  for d in dirs.values():
    d.mkdir()
  quick_data = ["launch.make_data", "--config=configs/data.py:quick"]
  tiny_train = ["launch.train", "--config=configs/cheater.py:tiny"]
  train = [*tiny_train, "--config.train.epochs=1"]
  return {
      "named data dir missing files": (
          [*quick_data, f"--workdir={dirs['md1']}"], {"CCMNIST_DATA_DIR": str(only_train)},
          dirs["md1"], r"lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
          r"t10k-labels-idx1-ubyte .*put all four MNIST files there, or unset"),
      "named data dir bad file": (
          [*quick_data, f"--workdir={dirs['md2']}", f"--config.data.data_dir={garbage}"], {},
          dirs["md2"], r"train-images-idx3-ubyte: 10 bytes, but MNIST's train-images-idx3-ubyte "
          r"has 47040016; .*delete it and supply a good copy"),
      "unknown variant": (["launch.study", "--config=configs/study.py:huge",
                           f"--workdir={dirs['variant']}"], {}, dirs["variant"],
                          r"Unknown config variant 'huge'.*use a comma-separated list"),
      "unknown config field": (["launch.study", "--config=configs/study.py:tiny",
                                "--config.num_seed=3", f"--workdir={dirs['field']}"], {},
                               dirs["field"], r"--config\.num_seed names no field of the config\. "
                               r"Did you mean \"num_seeds\""),
      "evaluate an empty dir": (["launch.evaluate", f"--workdir={dirs['eval']}"], {},
                                dirs["eval"], r"is not a training workdir; pass the --workdir"),
      "batch not divisible by the devices": (
          [*train, "--config.train.data_parallel=True", "--config.train.batch_size=33",
           f"--workdir={dirs['dp']}"], {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
          dirs["dp"], r"batch_size=33 is not a multiple of 2; pick a batch size divisible by 2"),
      "workdir of another config": ([*tiny_train, "--config.train.epochs=3",
                                     f"--workdir={trained}"],
                                    {}, trained, r"different config .*use a new --workdir"),
      "nan loss": ([*train, "--config.optim.lr=1e12", f"--workdir={dirs['nan']}"], {},
                   dirs["nan"], r"Loss became nan at step \d+ .*lower config\.optim\.lr"),
      "only a stage whose inputs are missing": (
          ["launch.study", "--config=configs/study.py:tiny", "--config.only=attack",
           f"--workdir={dirs['only']}"], {}, dirs["only"], r"stage attack needs .*--config\.only="),
      "only a benchmark stage whose inputs are missing": (
          ["launch.zoo", "--config=configs/zoo.py:tiny", "--config.only=select",
           f"--workdir={dirs['zoo_only']}"], {}, dirs["zoo_only"],
          r"stage select needs the outputs of stage evaluate, .*run it first "
          r"\(--config\.only=evaluate\)"),
  }


def test_command_line_errors_are_one_line_without_traceback(trained, tmp_path):
  cases = _cli_cases(tmp_path, trained)
  before = {name: tree_hashes(workdir) for name, (_, _, workdir, _) in cases.items()}
  env = {k: v for k, v in os.environ.items() if k not in ("CCMNIST_DATA_DIR", "XLA_FLAGS")}
  procs = {name: subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO, env={**env, **extra},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for name, (argv, extra, _, _) in cases.items()}
  failures = []
  try:
    for name, proc in procs.items():
      _, stderr = proc.communicate(timeout=300)
      errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
      what = cases[name][3]
      if (proc.returncode != 2 or len(errors) != 1 or not re.search(what, errors[0])
          or "Traceback" in stderr or not intact(before[name], cases[name][2])):
        failures.append(f"{name}: rc {proc.returncode}: {stderr[-1500:]}")
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert not failures, "\n\n".join(failures)


def test_verbose_prints_the_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", f"--workdir={tmp_path}", "--verbose"], cwd=REPO,
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode != 0 and "Traceback" in proc.stderr
  assert "FileNotFoundError" in proc.stderr and "is not a training workdir" in proc.stderr


def test_error_line_starts_its_own_line_after_a_partial_one():
  """Another thread (the checkpoint library's) may have left half a line on stderr when the
  error comes: the error still gets a line of its own, whole."""
  script = ("import os\nfrom launch import common\n"
            "def main(argv):\n"
            "  os.write(2, b'      half a line of noise')\n"
            "  raise ValueError('x is bad; set x')\n"
            "common.run(main)\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)
  assert proc.returncode == 2, proc.stderr
  assert "error: x is bad; set x" in proc.stderr.splitlines(), proc.stderr
  assert "Traceback" not in proc.stderr
