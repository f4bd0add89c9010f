"""The whole study as resumable stages; each writes into its own part of the study workdir.

  DIR/config.json          the study config (a different config is refused)
  DIR/figures/             sample grids, and every figure the report shows
  DIR/runs/<name>/         one training workdir per method (configs/<name>.py settings)
  DIR/interpret/, attack/  the interpretability and attack stages
  DIR/stages.json          wall time of each stage
  DIR/results.json, report.md

A stage whose outputs exist is skipped, so a killed study resumes where it stopped (a training
stage resumes from its last checkpoint).
"""

import json
import pathlib
import time

from absl import logging
import jax
import ml_collections

from ccmnist.data import export
from ccmnist.train import loop

TRAIN_RUNS = ("cheater", "gradient_penalty", "counterfactual", "color_gradient_penalty",
              "erm_adam", "erm_momentum")
STAGES = ("data",) + TRAIN_RUNS + ("evaluate", "interpret", "attack", "report")


def run_config(study, name: str) -> ml_collections.ConfigDict:
  """The ordinary training config of run `name` of the study (locked)."""
  run = study.runs[name]
  c = ml_collections.ConfigDict()
  c.seed = study.seed
  c.num_seeds = study.num_seeds
  c.data = ml_collections.ConfigDict(study.data.to_dict())
  c.data.update(run.data_overrides.to_dict())
  for part in ("model", "loss", "optim", "train"):
    c[part] = ml_collections.ConfigDict(run[part].to_dict())
  c.lock()
  return c


def run_dir(workdir, name: str) -> pathlib.Path:
  return pathlib.Path(workdir) / "runs" / name


def selected_replica(study, name: str) -> int:
  """The replica standing for a method downstream: seed 0 at the study's lambda."""
  config = run_config(study, name)
  grid = loop.lam_grid(config)
  lam = study.downstream_lam.get(name, grid[0])
  if lam not in grid:
    raise ValueError(f"config.downstream_lam.{name}={lam} is not in the run's lambda grid {grid}.")
  return grid.index(lam) * config.num_seeds


def downstream_runs(study, workdir, names: str) -> dict:
  """{name: (run workdir, replica)} for a comma-separated list of run names."""
  out = {}
  for name in (n.strip() for n in names.split(",") if n.strip()):
    if name not in TRAIN_RUNS:
      raise ValueError(f"Unknown run {name!r} in the study config; known runs: {TRAIN_RUNS}.")
    out[name] = (run_dir(workdir, name), selected_replica(study, name))
  return out


def selected_stages(study) -> tuple:
  if not study.only:
    return STAGES
  names = tuple(s.strip() for s in study.only.split(",") if s.strip())
  unknown = [s for s in names if s not in STAGES]
  if unknown:
    raise ValueError(f"config.only names unknown stages {unknown}; stages: {', '.join(STAGES)}.")
  return names


def check_study_config(study) -> None:
  for name in TRAIN_RUNS:
    loop.check_config(run_config(study, name))
  downstream_runs(study, ".", study.interpret.models)
  downstream_runs(study, ".", study.attack.models)
  selected_stages(study)


# ---------------------------------------------------------------- stages

def stage_data(study, workdir) -> bool:
  """Sample grids of every split (the colored arrays themselves live in the split cache)."""
  if (pathlib.Path(workdir) / "figures" / "samples_test_hard.png").exists():
    return False
  export.make_data(study.data, workdir, write_arrays=False)
  return True


def stage_train(study, workdir, name: str) -> bool:
  if (run_dir(workdir, name) / "results.json").exists():
    return False
  loop.train_and_evaluate(run_config(study, name), run_dir(workdir, name))
  return True


def stage_evaluate(study, workdir) -> bool:
  from ccmnist.eval import run as eval_run  # pylint: disable=g-import-not-at-top
  ran = False
  for name in TRAIN_RUNS:
    if not (run_dir(workdir, name) / "eval.json").exists():
      # Figures of the replica that stands for the method downstream (the study's lambda).
      eval_run.evaluate_run(run_dir(workdir, name),
                            figure_replica=selected_replica(study, name))
      ran = True
  return ran


def _analysis_stage(study, workdir, name: str, runner) -> bool:
  """The interpret or attack stage: `runner` is that package's run module."""
  out = pathlib.Path(workdir) / name
  if (out / f"{name}.json").exists():
    return False
  settings = study[name]
  runner_fn = getattr(runner, f"{name}_runs")
  runner_fn(downstream_runs(study, workdir, settings.models),
            runner.default_config(settings.variant), out)
  return True


def stage_interpret(study, workdir) -> bool:
  from ccmnist.interpret import run as interpret_run  # pylint: disable=g-import-not-at-top
  return _analysis_stage(study, workdir, "interpret", interpret_run)


def stage_attack(study, workdir) -> bool:
  from ccmnist.attacks import run as attack_run  # pylint: disable=g-import-not-at-top
  return _analysis_stage(study, workdir, "attack", attack_run)


def stage_report(study, workdir) -> bool:
  from ccmnist.report import report  # pylint: disable=g-import-not-at-top
  report.write_report(study, workdir)
  return True


def _run_stage(study, workdir, stage: str) -> bool:
  if stage == "data":
    return stage_data(study, workdir)
  if stage in TRAIN_RUNS:
    return stage_train(study, workdir, stage)
  return globals()[f"stage_{stage}"](study, workdir)


def read_stage_times(workdir) -> dict:
  path = pathlib.Path(workdir) / "stages.json"
  return json.loads(path.read_text()) if path.exists() else {}


def run_study(study, workdir) -> dict:
  """Runs (or resumes) every selected stage; returns {stage: seconds}."""
  check_study_config(study)
  workdir = loop.claim_workdir(study, workdir, ignore=("only",))  # Stages may be rerun one by one.
  stages = selected_stages(study)
  times = read_stage_times(workdir)
  t_start = time.perf_counter()
  for i, stage in enumerate(stages):
    t0 = time.perf_counter()
    logging.info("[study %d/%d] stage %s ...", i + 1, len(stages), stage)
    ran = _run_stage(study, workdir, stage)
    dt = time.perf_counter() - t0
    if ran:
      times[stage] = {"seconds": dt, "device": jax.devices()[0].device_kind,
                      "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
      loop.atomic_write_text(workdir / "stages.json", json.dumps(times, indent=1))
    logging.info("[study %d/%d] stage %s %s in %.1fs (study so far %.1fs)", i + 1, len(stages),
                 stage, "done" if ran else "already done, skipped", dt,
                 time.perf_counter() - t_start)
  return times
