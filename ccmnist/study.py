"""The whole study as a table of resumable stages over the study workdir (layout.py).

A stage whose outputs exist is skipped, so a killed study resumes where it stopped (a training
stage resumes from its last checkpoint).
"""

import functools
import pathlib
import time

from absl import logging
import jax

from ccmnist import layout
from ccmnist.attacks import run as attack_run
from ccmnist.data import export
from ccmnist.data import splits as splits_lib
from ccmnist.eval import run as eval_run
from ccmnist.interpret import run as interpret_run
from ccmnist.plots import data as data_plots
from ccmnist.report import report
from ccmnist.train import loop
from ccmnist.train import runs as runs_lib
from ccmnist.util import workdir as workdir_lib


def make_data(data_cfg, workdir, *, write_arrays: bool = True) -> dict:
  """Builds (or loads from the cache) the splits; DIR/data/*.npz and DIR/figures/samples_*.png."""
  splits = splits_lib.get_splits(data_cfg)
  if write_arrays:
    export.write_splits(splits, workdir)
  data_plots.save_sample_grids(splits, pathlib.Path(workdir) / "figures")
  return splits


# ---------------------------------------------------------------- stages

def stage_data(study, workdir) -> bool:
  """Sample grids of every split (the colored arrays themselves live in the split cache)."""
  if (pathlib.Path(workdir) / "figures" / "samples_test_hard.png").exists():
    return False
  make_data(study.data, workdir, write_arrays=False)
  return True


def stage_train(study, workdir, *, name: str) -> bool:
  if (layout.run_dir(workdir, name) / "results.json").exists():
    return False
  loop.train_and_evaluate(layout.run_config(study, name), layout.run_dir(workdir, name))
  return True


def stage_evaluate(study, workdir) -> bool:
  ran = False
  for name in layout.train_runs(study):
    if not (layout.run_dir(workdir, name) / "eval.json").exists():
      # Figures of the replica that stands for the method downstream (the study's lambda).
      eval_run.evaluate_run(layout.run_dir(workdir, name),
                            figure_replica=layout.selected_replica(study, name))
      ran = True
  return ran


def stage_analysis(study, workdir, *, name: str, analyse) -> bool:
  """The interpret or attack stage: analyse(runs, settings, out_dir) on the study's models."""
  out = layout.analysis_dir(workdir, name)
  if (out / f"{name}.json").exists():
    return False
  settings = study[name]
  analyse(layout.downstream_runs(study, workdir, settings.models), settings.settings, out)
  return True


def stage_report(study, workdir) -> bool:
  report.write_report(study, workdir)
  return True


def stage_table(study) -> dict:
  """Every stage, in the order it runs: name -> stage(study, workdir) -> whether it ran; a
  training stage per run of the study (layout.train_runs)."""
  return {
      "data": stage_data,
      **{name: functools.partial(stage_train, name=name) for name in layout.train_runs(study)},
      "evaluate": stage_evaluate,
      "interpret": functools.partial(stage_analysis, name="interpret",
                                     analyse=interpret_run.interpret_runs),
      "attack": functools.partial(stage_analysis, name="attack", analyse=attack_run.attack_runs),
      "report": stage_report,
  }


def selected_stages(study) -> tuple:
  table = stage_table(study)
  if not study.only:
    return tuple(table)
  names = tuple(s.strip() for s in study.only.split(",") if s.strip())
  unknown = [s for s in names if s not in table]
  if unknown:
    raise ValueError(f"config.only names unknown stages {unknown}; stages: {', '.join(table)}.")
  return names


def stage_inputs(study, stage: str) -> tuple:
  """The training runs whose outputs `stage` reads."""
  if stage == "evaluate":
    return layout.train_runs(study)
  if stage in ("interpret", "attack"):
    names = (layout.parse_model(study, m)[0] for m in study[stage].models.split(",")
             if m.strip())
    return tuple(dict.fromkeys(names))
  return ()


def check_stage_inputs(study, workdir, stages: tuple) -> None:
  """Raises, before anything runs, if a selected stage reads a training run that has not
  finished in workdir and is not selected before it; the message says what to run first."""
  for i, stage in enumerate(stages):
    missing = [name for name in stage_inputs(study, stage) if name not in stages[:i]
               and not (layout.run_dir(workdir, name) / "results.json").exists()]
    if missing:
      both = sorted({*missing, *stages}, key=list(stage_table(study)).index)
      raise ValueError(
          f"stage {stage} needs the trained runs {', '.join(missing)}, which {workdir} does not "
          f"hold yet; run them first (--config.only={','.join(missing)}), or together "
          f"(--config.only={','.join(both)}), or the whole study (--config.only='').")


def check_study_config(study) -> None:
  for name in layout.train_runs(study):
    runs_lib.check_config(layout.run_config(study, name))
  layout.downstream_runs(study, ".", study.interpret.models)
  layout.downstream_runs(study, ".", study.attack.models)
  attack_run.check_config(study.attack.settings)  # A bad attack setting fails before training.
  selected_stages(study)


def run_study(study, workdir) -> dict:
  """Runs (or resumes) every selected stage; returns {stage: seconds}."""
  check_study_config(study)
  # `only` selects what runs and `compare_with` what the report sets beside it, not what is
  # computed: they may change between runs on one workdir.
  workdir = workdir_lib.claim_workdir(study, workdir, ignore=("only", "compare_with"))
  try:
    return _run_stages(study, workdir)
  finally:
    workdir_lib.release_workdir(workdir)


def _run_stages(study, workdir) -> dict:
  stages, table = selected_stages(study), stage_table(study)
  check_stage_inputs(study, workdir, stages)
  times = layout.read_stage_times(workdir)
  t_start = time.perf_counter()
  for i, stage in enumerate(stages):
    t0 = time.perf_counter()
    logging.info("[study %d/%d] stage %s ...", i + 1, len(stages), stage)
    ran = table[stage](study, workdir)
    dt = time.perf_counter() - t0
    if ran:
      times[stage] = {"seconds": dt, "device": jax.devices()[0].device_kind,
                      "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
      layout.write_stage_times(workdir, times)
    logging.info("[study %d/%d] stage %s %s in %.1fs (study so far %.1fs)", i + 1, len(stages),
                 stage, "done" if ran else "already done, skipped", dt,
                 time.perf_counter() - t_start)
  return times
