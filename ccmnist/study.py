"""The whole study as a table of resumable stages over the study workdir (layout.py).

A stage whose outputs exist is skipped, so a killed study resumes where it stopped (a training
stage resumes from its last checkpoint). pipeline.py runs the table: the workdir lock, config.only,
stage times, the refusal of a stage whose inputs are missing.
"""

import functools
import pathlib

from ccmnist import layout
from ccmnist import pipeline
from ccmnist.attacks import run as attack_run
from ccmnist.data import export
from ccmnist.data import splits as splits_lib
from ccmnist.eval import run as eval_run
from ccmnist.interpret import run as interpret_run
from ccmnist.plots import data as data_plots
from ccmnist.report import report
from ccmnist.train import loop
from ccmnist.train import runs as runs_lib


def make_data(data_cfg, workdir, *, write_arrays: bool = True) -> dict:
  """Builds (or loads from the cache) the splits; DIR/data/*.npz and DIR/figures/samples_*.png."""
  splits = splits_lib.get_splits(data_cfg)
  if write_arrays:
    export.write_splits(splits, workdir)
  data_plots.save_sample_grids(splits, pathlib.Path(workdir) / "figures")
  return splits


# ---------------------------------------------------------------- stages

def data_done(study, workdir) -> bool:
  del study
  return (pathlib.Path(workdir) / "figures" / "samples_test_hard.png").exists()


def stage_data(study, workdir) -> bool:
  """Sample grids of every split (the colored arrays themselves live in the split cache)."""
  if data_done(study, workdir):
    return False
  make_data(study.data, workdir, write_arrays=False)
  return True


def train_done(study, workdir, *, name: str) -> bool:
  del study
  return (layout.run_dir(workdir, name) / "results.json").exists()


def stage_train(study, workdir, *, name: str) -> bool:
  if train_done(study, workdir, name=name):
    return False
  loop.train_and_evaluate(layout.run_config(study, name), layout.run_dir(workdir, name))
  return True


def evaluate_done(study, workdir) -> bool:
  return all((layout.run_dir(workdir, name) / "eval.json").exists()
             for name in layout.train_runs(study))


def stage_evaluate(study, workdir) -> bool:
  ran = False
  for name in layout.train_runs(study):
    if not (layout.run_dir(workdir, name) / "eval.json").exists():
      # Figures of the replica that stands for the method downstream (the study's lambda).
      eval_run.evaluate_training_run(layout.run_dir(workdir, name),
                                     figure_replica=layout.selected_replica(study, name))
      ran = True
  return ran


def analysis_done(study, workdir, *, name: str) -> bool:
  del study
  return (layout.analysis_dir(workdir, name) / f"{name}.json").exists()


def stage_analysis(study, workdir, *, name: str, analyse) -> bool:
  """The interpret or attack stage: analyse(runs, settings, out_dir) on the study's models."""
  if analysis_done(study, workdir, name=name):
    return False
  settings = study[name]
  analyse(layout.downstream_runs(study, workdir, settings.models), settings.settings,
          layout.analysis_dir(workdir, name))
  return True


def analysis_needs(study, *, name: str) -> tuple:
  """The training runs whose models the interpret or attack stage reads."""
  names = (layout.parse_model(study, m)[0] for m in study[name].models.split(",") if m.strip())
  return tuple(dict.fromkeys(names))


def stage_report(study, workdir) -> bool:
  report.write_report(study, workdir)
  return True


def stage_table(study) -> dict:
  """Every stage, in the order it runs (pipeline.py): its function, whether its outputs are
  there, and the stages whose outputs it reads; a training stage per run of the study
  (layout.train_runs)."""
  runs = layout.train_runs(study)
  return {
      "data": pipeline.Stage(stage_data, data_done),
      **{name: pipeline.Stage(functools.partial(stage_train, name=name),
                              functools.partial(train_done, name=name)) for name in runs},
      "evaluate": pipeline.Stage(stage_evaluate, evaluate_done, needs=runs),
      **{name: pipeline.Stage(functools.partial(stage_analysis, name=name, analyse=analyse),
                              functools.partial(analysis_done, name=name),
                              needs=functools.partial(analysis_needs, name=name))
         for name, analyse in (("interpret", interpret_run.interpret_runs),
                               ("attack", attack_run.attack_runs))},
      "report": pipeline.Stage(stage_report),
  }


def selected_stages(study) -> tuple:
  """The stages config.only selects, in stage_table's order (pipeline.selected_stages)."""
  return pipeline.selected_stages(study.only, stage_table(study))


def check_study_config(study) -> None:
  for name in layout.train_runs(study):
    runs_lib.check_config(layout.run_config(study, name))
  layout.downstream_runs(study, ".", study.interpret.models)
  layout.downstream_runs(study, ".", study.attack.models)
  attack_run.check_config(study.attack.settings)  # A bad attack setting fails before training.
  selected_stages(study)


def run_study(study, workdir, *, command: str | None = None) -> dict:
  """Runs (or resumes) every selected stage; returns {stage: seconds} of stages.json.
  command: the command line that makes this config (pipeline.COMMAND_FILE)."""
  check_study_config(study)
  # `only` selects what runs and `compare_with` what the report sets beside it, not what is
  # computed: they may change between runs on one workdir.
  return pipeline.run_stages(study, workdir, stage_table(study), label="study",
                             ignore=("only", "compare_with"), command=command)
