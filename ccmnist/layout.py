"""The study workdir: where each stage writes, and which replicas stand for a method.

  DIR/config.json          the study config (a different config is refused)
  DIR/figures/             sample grids, and every figure the report shows
  DIR/runs/<name>/         one training workdir per method (train/runs.py)
  DIR/interpret/, attack/  the interpretability and attack stages
  DIR/stages.json          wall time of each stage (pipeline.py writes it)
  DIR/results.json, report.md

The study (study.py) writes this layout and the report (report/) reads it; both import this module
and neither imports the other.
"""

import pathlib

import ml_collections

from ccmnist.train import config as config_lib
from ccmnist.train import runs

def train_runs(study) -> tuple:
  """The training runs of a study (config.runs), in the order they are trained and reported
  (config.train_runs)."""
  names = tuple(study.train_runs)
  if sorted(names) != sorted(study.runs):
    raise ValueError(f"config.train_runs {names} must name every run of config.runs once: "
                     f"{', '.join(sorted(study.runs))}.")
  return names


def run_config(study, name: str) -> ml_collections.ConfigDict:
  """The ordinary training config of run `name` of the study (locked)."""
  run = study.runs[name]
  return config_lib.training_config(
      seed=study.seed, num_seeds=study.num_seeds,
      data={**study.data.to_dict(), **run.data_overrides.to_dict()},
      model=run.model, loss=run.loss, optim=run.optim, train=run.train)


def run_dir(workdir, name: str) -> pathlib.Path:
  return pathlib.Path(workdir) / "runs" / name


def analysis_dir(workdir, stage: str) -> pathlib.Path:
  """DIR/interpret or DIR/attack."""
  return pathlib.Path(workdir) / stage


def downstream_lam(study, name: str) -> float:
  """The lambda whose replicas stand for a method downstream: the study's, else grid point 0."""
  return study.downstream_lam.get(name, runs.lam_grid(run_config(study, name))[0])


def selected_replica(study, name: str, lam: float | None = None, seed_index: int = 0) -> int:
  """The replica standing for a method downstream: the seed_index-th seed (default the first,
  whose replica the figures show) at `lam` (default the study's)."""
  lam = downstream_lam(study, name) if lam is None else lam
  try:
    return runs.replica_of(run_config(study, name), lam, seed_index)
  except ValueError as e:
    raise ValueError(f"config.downstream_lam.{name} or a model '{name}@LAMBDA': {e}") from None


def selected_replicas(study, name: str, lam: float | None = None) -> list:
  """Every seed's replica of a method at `lam` (default the study's), the first seed first."""
  return [selected_replica(study, name, lam, s) for s in range(study.num_seeds)]


def model_key(name: str, lam: float | None = None) -> str:
  """How a downstream model is named: 'counterfactual', or 'counterfactual@0' for the replica
  at another grid point (e.g. the lambda = 0 control of a method)."""
  return name if lam is None else f"{name}@{lam:g}"


def parse_model(study, spec: str) -> tuple:
  """'name' -> (name, None); 'name@0.5' -> (name, 0.5): a run of the study, and a lambda."""
  name, sep, lam = spec.strip().partition("@")
  if name not in train_runs(study):
    raise ValueError(f"Unknown run {name!r} in the study config; known runs: "
                     f"{train_runs(study)}.")
  try:
    return name, float(lam) if sep else None
  except ValueError:
    raise ValueError(f"Bad model {spec!r}: write a run name, or name@LAMBDA with LAMBDA a point "
                     "of its lambda grid, e.g. counterfactual@0.") from None


def downstream_runs(study, workdir, names: str) -> dict:
  """{model key: (run workdir, [replica of each seed])} for a comma-separated list of models
  ('name' or 'name@lambda'): the interpret and attack stages analyse every seed, and draw their
  figures from the first."""
  out = {}
  for spec in (n for n in names.split(",") if n.strip()):
    name, lam = parse_model(study, spec)
    out[model_key(name, lam)] = (run_dir(workdir, name), selected_replicas(study, name, lam))
  return out
