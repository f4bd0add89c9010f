"""One resumable stage runner for the study (study.py) and the debiasing benchmark (zoo/stages.py).

A pipeline is a table {name: Stage}, in the order its stages run. `run_stages`:

  1. reads config.only: '' runs every stage; otherwise a comma-separated list of stage names,
     each checked against the table, and the stages named run in the TABLE's order, whatever
     order they are written in ('report,train' runs train, then report);
  2. claims the workdir (util/workdir.claim_workdir): one config and one live process per
     workdir; a second process is refused with the holder's pid and host;
  3. refuses, before anything runs, a selected stage that reads the outputs of a stage that is
     neither done in the workdir nor selected: one line naming the stage to run first;
  4. runs each selected stage; a stage skips what it finished before (a killed pipeline resumes
     where it stopped), and the wall time of a stage that ran is added to DIR/stages.json.
"""

import dataclasses
import pathlib
import time
from typing import Callable

from absl import logging
import jax

from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib

STAGE_TIMES_FILE = "stages.json"
COMMAND_FILE = "command.json"


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a pipeline.

  fn(config, workdir) -> bool: runs what is left of the stage (parts it finished before are
    skipped, so a killed stage resumes) and returns whether it ran anything.
  done(config, workdir) -> bool: whether the outputs that later stages read are in the workdir;
    None for a stage no other stage reads.
  needs: the names of earlier stages whose outputs it reads, or a function of the config that
    returns them (what a stage reads may depend on the config).
  """
  fn: Callable
  done: Callable | None = None
  needs: tuple | Callable = ()

  def needed(self, config) -> tuple:
    return tuple(self.needs(config) if callable(self.needs) else self.needs)


def read_stage_times(workdir) -> dict:
  """DIR/stages.json: {stage: {'seconds', 'device', 'finished'}} of the stages that ran."""
  return io.read_json(pathlib.Path(workdir) / STAGE_TIMES_FILE, default={})


def write_stage_times(workdir, times: dict) -> None:
  io.write_json(pathlib.Path(workdir) / STAGE_TIMES_FILE, times, indent=1)


def record_stage_time(workdir, times: dict, stage: str, seconds: float) -> None:
  """Adds a stage's wall time to DIR/stages.json (times: what it holds so far, updated)."""
  times[stage] = {"seconds": seconds, "device": jax.devices()[0].device_kind,
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
  write_stage_times(workdir, times)


def selected_stages(only: str, table: dict) -> tuple:
  """The stages config.only selects, in the table's order ('' selects them all)."""
  names = tuple(dict.fromkeys(s.strip() for s in str(only or "").split(",") if s.strip()))
  if not names:
    return tuple(table)
  unknown = [s for s in names if s not in table]
  if unknown:
    raise ValueError(f"config.only names unknown stages {unknown}; stages: {', '.join(table)}.")
  return tuple(s for s in table if s in names)


def check_table(config, table: dict) -> None:
  """Raises if a stage needs a stage that is not before it in the table (a bug of the table)."""
  order = list(table)
  for i, (name, stage) in enumerate(table.items()):
    bad = [n for n in stage.needed(config) if n not in order[:i] or table[n].done is None]
    if bad:
      raise ValueError(f"stage {name} needs {bad}, which are not earlier stages with a `done` "
                       "check; put them before it in the table and give them one.")


def check_inputs(config, workdir, table: dict, stages: tuple) -> None:
  """Raises, before anything runs, if a selected stage needs a stage that is neither selected
  nor done in workdir; the one-line message names what to run first."""
  check_table(config, table)
  for stage in stages:
    missing = [n for n in table[stage].needed(config)
               if n not in stages and not table[n].done(config, workdir)]
    if missing:
      both = [s for s in table if s in {*missing, *stages}]
      these, it = ("stage", "it") if len(missing) == 1 else ("stages", "them")
      raise ValueError(
          f"stage {stage} needs the outputs of {these} {', '.join(missing)}, which {workdir} "
          f"does not hold yet; run {it} first (--config.only={','.join(missing)}), or together "
          f"(--config.only={','.join(both)}), or every stage (--config.only='').")


def read_command(workdir) -> str | None:
  """The command line recorded in DIR/command.json, or None."""
  record = io.read_json(pathlib.Path(workdir) / COMMAND_FILE)
  return record and record.get("command")


def run_stages(config, workdir, table: dict, *, label: str, ignore: tuple = ("only",),
               then: Callable | None = None, command: str | None = None) -> dict:
  """Runs (or resumes) the stages config.only selects, holding the workdir; returns
  DIR/stages.json's {stage: {'seconds', ...}}.

  label: how log lines name the pipeline ('[study 2/9] stage cheater ...').
  ignore: top-level config keys that select what runs rather than what is computed (`only`):
    they may change between runs on one workdir.
  then(workdir, stages): called after the last stage, while the workdir is still held.
  command: the command line that makes this config, kept in DIR/command.json by the first call
    (later calls run the same config: claim_workdir checks it) for the reports to print.
  """
  stages = selected_stages(config.only, table)
  check_table(config, table)
  workdir = workdir_lib.claim_workdir(config, workdir, ignore=ignore)
  try:
    if command and not (workdir / COMMAND_FILE).exists():
      io.write_json(workdir / COMMAND_FILE, {"command": command})
    check_inputs(config, workdir, table, stages)
    times, t_start = read_stage_times(workdir), time.perf_counter()
    for i, stage in enumerate(stages, 1):
      logging.info("[%s %d/%d] stage %s ...", label, i, len(stages), stage)
      t0 = time.perf_counter()
      ran = table[stage].fn(config, workdir)
      if ran:
        record_stage_time(workdir, times, stage, time.perf_counter() - t0)
      logging.info("[%s %d/%d] stage %s %s in %.1fs (%s so far %.1fs)", label, i, len(stages),
                   stage, "done" if ran else "already done, skipped", time.perf_counter() - t0,
                   label, time.perf_counter() - t_start)
    if then is not None:
      then(workdir, stages)
    return times
  finally:
    workdir_lib.release_workdir(workdir)
