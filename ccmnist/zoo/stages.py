"""The benchmark as a table of resumable stages over its workdir (plan.py's layout), run by
pipeline.py (the workdir lock, config.only, stage times, the refusal of a stage without inputs).

  train     every run of the config, per cell an entry's needs first (JTT's and EIIL's
            identification run, DFR's base ERM run), each one program of K replicas (seeds x
            lambda grid); a finished run is read back and a killed one resumes from its last
            checkpoint; a run whose loss diverges is recorded (failed.json) and the benchmark goes
            on; then a short cost probe of every model the projection prices but this profile
            does not train. With analyse_as_trained (launch.zoo --keep), each row is also
            evaluated, selected and analysed as soon as its family is trained (the same outputs
            the later stages would write, made while its parameters are still there)
  evaluate  each run's measures from its predictions (benchmark_eval.json)
  select    the three model selections of every run (selection.json)
  analyse   each run at its headline grid point: does it use, carry, or resist the color
            shortcut, beside random inits (analysis.json; ccmnist/zoo/analyse.py)
  report    results.json, benchmark.md, figures/
"""

import collections
import dataclasses
import functools
import pathlib
import time
from typing import Callable

from absl import logging
import jax

from ccmnist import pipeline
from ccmnist.zoo import analyse as analyse_lib
from ccmnist.zoo import cost as cost_lib
from ccmnist.zoo import entries
from ccmnist.zoo import evaluate
from ccmnist.zoo import plan
from ccmnist.zoo import report
from ccmnist.zoo import select as select_lib
from ccmnist.data import splits as splits_lib
from ccmnist.train import dfr
from ccmnist.train import loop
from ccmnist.train import methods as methods_lib
from ccmnist.train import runs as runs_lib
from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib


def _duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m {seconds % 60:02d}s"
  return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def finished(workdir, run: plan.Run) -> bool:
  """Whether a run has results or is recorded as failed."""
  d = plan.run_dir(workdir, run)
  return (d / "results.json").exists() or (d / report.FAILED_FILE).exists()


def _work(bench, run: plan.Run, workdir) -> tuple:
  """How much training a run is, for the ETA: (its examples times the images each costs, the
  (model, loss) whose rate prices it)."""
  if plan.kind_of(bench, run.entry) != "train":
    return 0.0, (run.model, None)
  config = plan.run_config(bench, run, workdir)
  images = methods_lib.get(config.loss.name).images_per_example
  return float(cost_lib.examples(config) * images), (run.model, config.loss.name)


def refit(bench, run: plan.Run, workdir) -> None:
  """A DFR entry: its needed run's last layer refit on val_balanced, one grid point per
  regularization strength (ccmnist/train/dfr.py)."""
  entry = bench.zoo[run.entry]
  dfr.refit(plan.run_dir(workdir, plan.needed_run(bench, run)), plan.run_dir(workdir, run),
            reg_grid=tuple(entry.lam_grid), **entry.settings.to_dict())


def train_one(bench, run: plan.Run, workdir) -> float:
  """Trains (or refits) one run, recording its wall time over every call that trained it (a
  resumed run's earlier calls too); a diverged loss is recorded in failed.json instead of
  stopping the benchmark. Returns that wall time."""
  rdir = plan.run_dir(workdir, run)
  need = plan.needed_run(bench, run)
  if need is not None and (plan.run_dir(workdir, need) / report.FAILED_FILE).exists():
    io.write_json(rdir / report.FAILED_FILE,
                  {"error": f"needs the {need.entry} run {need.key}, which failed"})
    return 0.0
  cost_lib.open_call(rdir)  # A resumed run's wall time counts its earlier calls.
  t0 = time.perf_counter()
  try:
    if plan.kind_of(bench, run.entry) == "refit":
      refit(bench, run, workdir)
    else:
      loop.train_and_evaluate(plan.run_config(bench, run, workdir), rdir)
  except loop.NonFiniteLossError as e:
    logging.warning("[benchmark] %s diverged: %s", run.key, e)
    io.write_json(rdir / report.FAILED_FILE, {"error": str(e)})
    return time.perf_counter() - t0
  call = time.perf_counter() - t0
  wall, calls = cost_lib.close_call(rdir, call)
  io.write_json(rdir / cost_lib.TIME_FILE, {
      "wall_s": wall, "calls": calls, "last_call_s": call,
      "device": jax.devices()[0].device_kind, "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
  return wall


def eta(left: list, work: dict, spent: dict) -> float:
  """Seconds the runs `left` will take: each run's work (work: {key: (work, (model, loss))}) at
  the rate so far of its model and loss, else of its model, else of every run; spent:
  {(model, loss): [work, seconds]} done. Methods differ in cost per image (a gradient penalty
  backpropagates twice), so a model's rate alone misprices the other methods. Pooled rates
  leave out the runs that trained nothing (DFR refits a head: seconds without work)."""
  def pooled(keys):
    keys = [k for k in keys if spent[k][0] > 0]
    return [sum(spent[k][0] for k in keys), sum(spent[k][1] for k in keys)]
  out = 0.0
  for run in left:
    amount, key = work[run.key]
    w, t = spent.get(key) or pooled([k for k in spent if k[0] == key[0]] or list(spent))
    out += amount * t / w if w > 0 else 0.0
  return out


def row_of(bench, run: plan.Run) -> plan.Run | None:
  """The report row a run is selected with: itself, or the entry whose family it extends; None
  for a run no row is selected from (an identification run)."""
  rows = analyse_lib.rows(bench)
  for row in rows:
    if row.cell == run.cell and run.entry in (row.entry, *plan.members_of(bench, row.entry)):
      return row
  return None


def analyse_if_ready(bench, workdir, run: plan.Run, caches: dict) -> bool:
  """Evaluates, selects and analyses the row of `run` once the row and its family are trained in
  its cell: the per-row steps of the evaluate, select and analyse stages, which give the same
  analysis.json when they later run (they skip what it holds). Returns whether it analysed.
  A benchmark whose workdir may not outlive its machine keeps each analysis as it lands, so
  that its runs' parameters need not be kept (carry.py)."""
  row = row_of(bench, run)
  if row is None:
    return False
  family = [dataclasses.replace(row, entry=e) for e in (row.entry, *plan.members_of(bench,
                                                                                    row.entry))]
  if not all(finished(workdir, r) for r in family):
    return False
  for r in family:
    if not measured(workdir, r):
      evaluate_run(workdir, r, caches.setdefault("splits", SplitCache()))
  grid = family_grid(bench, workdir, row)
  point = grid and analyse_lib.headline_point(
      bench, row, {row.key: select_lib.select(grid, entries.stops_early(bench, row.entry))})
  if not point or analyse_lib.analysed(bench, workdir, row, point):
    return False
  out = analyse_lib.analyse_run(bench, workdir, row, point,
                                null_cache=caches.setdefault("null", {}),
                                stim_cache=caches.setdefault("stimuli", {}))
  io.write_json(plan.run_dir(workdir, row) / analyse_lib.ANALYSIS_FILE, out, indent=1)
  logging.info("[benchmark train] %s analysed as trained in %.1fs", row.key,
               out["timing"]["seconds"])
  return True


def stage_train(bench, workdir, *, analyse_as_trained: bool = False,
                after_run: Callable | None = None) -> bool:
  """analyse_as_trained: analyse each row as soon as its family is trained (analyse_if_ready),
  when the analyse stage is selected. after_run(): called after each run (and its analysis)."""
  analyse_as_trained = analyse_as_trained and "analyse" in selected_stages(bench)
  if analyse_as_trained:
    analyse_lib.check_config(bench.analyse)
  caches = {}
  runs = plan.all_runs(bench)
  cost_lib.write_plan(workdir, runs, plan.probes(bench))
  todo = [r for r in runs if not finished(workdir, r)]
  work = {r.key: _work(bench, r, workdir) for r in todo}
  total_work, spent, t_start = sum(w for w, _ in work.values()), {}, time.perf_counter()
  logging.info("[benchmark train] %d runs, %d finished before, %d to train", len(runs),
               len(runs) - len(todo), len(todo))
  for k, run in enumerate(todo):
    wall = train_one(bench, run, workdir)
    if analyse_as_trained:
      analyse_if_ready(bench, workdir, run, caches)
    if after_run is not None:
      after_run()
    amount, key = work[run.key]
    done = spent.setdefault(key, [0.0, 0.0])
    done[0], done[1] = done[0] + amount, done[1] + wall
    left = todo[k + 1:]
    logging.info("[benchmark train %d/%d] %s %s in %.1fs (%.0f img/s); %d/%d runs done, "
                 "%s so far, ETA %s", runs.index(run) + 1, len(runs), run.key,
                 "failed" if (plan.run_dir(workdir, run) / report.FAILED_FILE).exists()
                 else "done", wall, amount / wall if wall > 0 else 0.0,
                 len(runs) - len(left), len(runs), _duration(time.perf_counter() - t_start),
                 _duration(eta(left, work, spent)))
  ran_probe = False
  for protocol, model in plan.probes(bench):
    pdir = plan.probe_dir(workdir, protocol, model)
    if (pdir / "results.json").exists():
      continue
    _train_probe(bench, protocol, model, pdir)
    ran_probe = True
  if total_work or todo:
    logging.info("[benchmark train] %d runs trained in %s (%.0f img/s overall)", len(todo),
                 _duration(time.perf_counter() - t_start),
                 total_work / max(time.perf_counter() - t_start, 1e-9))
  return bool(todo) or ran_probe


def _train_probe(bench, protocol: str, model: str, pdir) -> None:
  """A model's short cost probe, with its wall time."""
  t0 = time.perf_counter()
  loop.train_and_evaluate(plan.probe_config(bench, protocol, model), pdir)
  io.write_json(pdir / cost_lib.TIME_FILE, {"wall_s": time.perf_counter() - t0,
                                            "device": jax.devices()[0].device_kind})
  logging.info("[benchmark train] cost probe %s/%s in %.1fs", protocol, model,
               time.perf_counter() - t0)


class SplitCache:
  """The split arrays of the last few data configs (runs of one cell share theirs)."""

  def __init__(self, size: int = 2):
    self.size, self.items = size, collections.OrderedDict()

  def get(self, data_cfg) -> dict:
    key = splits_lib.cache_key(data_cfg)
    if key not in self.items:
      self.items[key] = splits_lib.get_splits(data_cfg)
      while len(self.items) > self.size:
        self.items.popitem(last=False)
    self.items.move_to_end(key)
    return self.items[key]


def train_done(bench, workdir) -> bool:
  """Whether every run has results or is recorded as failed (the cost probes aside: no later
  stage reads them)."""
  return all(finished(workdir, r) for r in plan.all_runs(bench))


def measured(workdir, run: plan.Run) -> bool:
  """Whether the run failed or has its measures, every evaluated epoch's among them when its
  predictions are there (a run measured before they were is measured again)."""
  rdir = plan.run_dir(workdir, run)
  if (rdir / report.FAILED_FILE).exists():
    return True
  ev = io.read_json(rdir / evaluate.EVAL_FILE)
  if ev is None:
    return False
  return "by_epoch" in ev["grid"][0] or not (rdir / runs_lib.EPOCH_PREDICTIONS).is_dir()


def evaluate_done(bench, workdir) -> bool:
  """Whether every run that did not fail has its measures."""
  return all(measured(workdir, r) for r in plan.all_runs(bench))


def evaluate_run(workdir, run: plan.Run, cache: SplitCache) -> None:
  """Measures a finished run from its predictions (benchmark_eval.json)."""
  rdir = plan.run_dir(workdir, run)
  evaluate.measure_saved_predictions(rdir, cache.get(runs_lib.load_config(rdir).data))


def stage_evaluate(bench, workdir) -> bool:
  cache, ran = SplitCache(), False
  for run in plan.all_runs(bench):
    if measured(workdir, run):
      continue
    evaluate_run(workdir, run, cache)
    ran = True
  return ran


def select_done(bench, workdir) -> bool:
  del bench
  return (pathlib.Path(workdir) / report.SELECTION_FILE).exists()


def family_grid(bench, workdir, run: plan.Run) -> list | None:
  """The grid points of `run` and of its family's runs in its cell, each naming its entry (a
  family of one: the run's own points, entry None); None when none was measured."""
  family = plan.members_of(bench, run.entry)
  out, measured = [], False
  for entry in (run.entry, *family):
    ev = io.read_json(plan.run_dir(workdir, dataclasses.replace(run, entry=entry))
                      / evaluate.EVAL_FILE)
    if ev is not None:
      measured = True
      out += [{**p, "entry": entry if family else None} for p in ev["grid"]]
  return out if measured else None


def stage_select(bench, workdir) -> bool:
  out = {}
  for run in plan.all_runs(bench):
    grid = family_grid(bench, workdir, run)
    if grid is not None:
      out[run.key] = select_lib.select(grid, entries.stops_early(bench, run.entry))
  io.write_json(pathlib.Path(workdir) / report.SELECTION_FILE, out, indent=1)
  return True


def analyse_done(bench, workdir) -> bool:
  """Whether every run with a headline selection has its analysis."""
  return not analyse_lib.todo(bench, workdir, report.read_selection(workdir))


def stage_analyse(bench, workdir) -> bool:
  return analyse_lib.analyse_all(bench, workdir, report.read_selection(workdir)) > 0


def stage_report(bench, workdir) -> bool:
  report.write_report(bench, workdir)
  return True


# Every stage, in the order it runs (pipeline.py): its function, whether its outputs are there,
# and the stages whose outputs it reads.
STAGES = {
    "train": pipeline.Stage(stage_train, train_done),
    "evaluate": pipeline.Stage(stage_evaluate, evaluate_done, needs=("train",)),
    "select": pipeline.Stage(stage_select, select_done, needs=("evaluate",)),
    "analyse": pipeline.Stage(stage_analyse, analyse_done, needs=("select",)),
    "report": pipeline.Stage(stage_report, needs=("select",)),
}


# Config keys that may change between calls on one workdir: `only` selects what runs, the
# analyse stage's settings are kept in each analysis.json (a run analysed under other settings
# is analysed again), so a finished benchmark can be analysed without training it again, and
# `stop_early` is read by the select stage, which runs again on every call that names it.
IGNORE = ("only", "analyse", "stop_early")


def selected_stages(bench) -> tuple:
  """The stages config.only selects, in STAGES' order (pipeline.selected_stages)."""
  return pipeline.selected_stages(bench.only, STAGES)


def _report_again(bench, workdir, stages: tuple) -> None:
  """After the report stage, the report again, for its own stage time (the figure is unchanged)."""
  if "report" in stages:
    report.write_report(bench, workdir, figure=False)


def _claim(path) -> bool:
  """Takes the lock of a run's directory, or says False when another process holds it."""
  try:
    workdir_lib.lock_workdir(path)
  except workdir_lib.WorkdirBusyError:
    return False
  return True


def _claimable(bench, workdir, run: plan.Run) -> bool:
  """Not finished, and the run it needs (if any) is."""
  need = plan.needed_run(bench, run)
  return not finished(workdir, run) and (need is None or finished(workdir, need))


def claim_and_train(bench, workdir) -> int:
  """Trains every run (then every cost probe) that no other process holds, each under its own
  directory's lock, until none is left to claim; returns how many it trained. A run whose
  needed run another process is training is left to that process, which reaches it next."""
  trained, todo = 0, True
  while todo:
    todo = False
    for run in plan.all_runs(bench):
      rdir = plan.run_dir(workdir, run)
      if not _claimable(bench, workdir, run) or not _claim(rdir):
        continue
      try:
        if _claimable(bench, workdir, run):  # Another process may have finished it meanwhile.
          wall = train_one(bench, run, workdir)
          trained, todo = trained + 1, True
          logging.info("[benchmark share] %s trained in %.1fs", run.key, wall)
      finally:
        workdir_lib.release_workdir(rdir)
  for protocol, model in plan.probes(bench):
    pdir = plan.probe_dir(workdir, protocol, model)
    if (pdir / "results.json").exists() or not _claim(pdir):
      continue
    try:
      if not (pdir / "results.json").exists():
        _train_probe(bench, protocol, model, pdir)
        trained += 1
    finally:
      workdir_lib.release_workdir(pdir)
  return trained


def _probes_done(bench, workdir) -> bool:
  return all((plan.probe_dir(workdir, p, m) / "results.json").exists()
             for p, m in plan.probes(bench))


def _run_shared(bench, workdir, command) -> dict:
  """One of several processes finishing one benchmark: claim_and_train, then, when no run is
  left to anyone, the remaining stages, written by the last process to finish."""
  try:  # Writes config.json, or checks it against this config.
    workdir_lib.release_workdir(workdir_lib.claim_workdir(bench, workdir, ignore=IGNORE))
  except workdir_lib.WorkdirBusyError:
    workdir_lib.claim_workdir(bench, workdir, ignore=IGNORE, writer=False)
  cost_lib.write_plan(workdir, plan.all_runs(bench), plan.probes(bench))
  n = claim_and_train(bench, workdir)
  left = [r.key for r in plan.all_runs(bench) if not finished(workdir, r)]
  if left or not _probes_done(bench, workdir):
    logging.info("[benchmark share] trained %d runs; %d runs are held by other processes: the "
                 "last of them to finish writes the report.", n, len(left))
    return {}
  try:
    return pipeline.run_stages(bench, workdir, STAGES, label="benchmark", ignore=IGNORE,
                               then=lambda workdir, stages: _report_again(bench, workdir, stages),
                               command=command)
  except workdir_lib.WorkdirBusyError:
    logging.info("[benchmark share] trained %d runs; another process is writing the report.", n)
    return {}


def run_zoo(bench, workdir, *, share: bool = False, command: str | None = None,
            analyse_as_trained: bool = False, after_run: Callable | None = None) -> dict:
  """Runs (or resumes) every selected stage; returns {stage: seconds} of stages.json.

  command: the command line that makes this config (pipeline.COMMAND_FILE).
  share: one of several processes (on one host or several, over a shared file system) that
  finish this benchmark together (_run_shared); every stage is selected then.
  analyse_as_trained: the train stage analyses each row once its family is trained
  (analyse_if_ready); the same results, kept as they land.
  after_run(): called by the train stage after each run it trains.
  """
  selected_stages(bench)
  plan.check_config(bench, workdir)
  if share:
    if bench.only:
      raise ValueError("--share_workdir runs every stage; drop --config.only.")
    if analyse_as_trained or after_run:
      raise ValueError("--share_workdir analyses and keeps runs after training; drop "
                       "--analyse_as_trained and --keep.")
    return _run_shared(bench, workdir, command)
  table = STAGES
  if analyse_as_trained or after_run:
    table = {**STAGES, "train": dataclasses.replace(STAGES["train"], fn=functools.partial(
        stage_train, analyse_as_trained=analyse_as_trained, after_run=after_run))}
  # `only` selects what runs, not what is computed: it may change between calls on a workdir.
  return pipeline.run_stages(bench, workdir, table, label="benchmark", ignore=IGNORE,
                             then=lambda workdir, stages: _report_again(bench, workdir, stages),
                             command=command)
