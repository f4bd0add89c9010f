"""The benchmark as a table of resumable stages over its workdir (plan.py's layout).

  train     every run of the config, per cell an entry's needs first (JTT's and EIIL's
            identification run, DFR's base ERM run), each one program of K replicas (seeds x
            lambda grid); a finished run is read back and a killed one resumes from its last
            checkpoint; a run whose loss diverges is recorded (failed.json) and the benchmark goes
            on; then a short cost probe of every model the projection prices but this profile
            does not train
  evaluate  each run's measures from its predictions (benchmark_eval.json)
  select    the three model selections of every run (selection.json)
  report    results.json, benchmark.md, figures/
"""

import collections
import pathlib
import time

from absl import logging
import jax

from ccmnist import layout
from ccmnist.zoo import cost as cost_lib
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


def _work(bench, run: plan.Run, workdir) -> float:
  """How much training a run is, for the ETA: its examples times the images each costs."""
  if plan.kind_of(bench, run.entry) != "train":
    return 0.0
  config = plan.run_config(bench, run, workdir)
  return float(cost_lib.examples(config) * methods_lib.get(config.loss.name).images_per_example)


def refit(bench, run: plan.Run, workdir) -> None:
  """A DFR entry: its needed run's last layer refit on val_balanced, one grid point per
  regularization strength (ccmnist/train/dfr.py)."""
  entry = bench.zoo[run.entry]
  dfr.refit(plan.run_dir(workdir, plan.needed_run(bench, run)), plan.run_dir(workdir, run),
            reg_grid=tuple(entry.lam_grid), **entry.settings.to_dict())


def train_one(bench, run: plan.Run, workdir) -> float:
  """Trains (or refits) one run, recording its wall time; a diverged loss is recorded in
  failed.json instead of stopping the benchmark. Returns the wall time."""
  rdir = plan.run_dir(workdir, run)
  need = plan.needed_run(bench, run)
  t0 = time.perf_counter()
  if need is not None and (plan.run_dir(workdir, need) / report.FAILED_FILE).exists():
    io.write_json(rdir / report.FAILED_FILE,
                  {"error": f"needs the {need.entry} run {need.key}, which failed"})
    return 0.0
  try:
    if plan.kind_of(bench, run.entry) == "refit":
      refit(bench, run, workdir)
    else:
      loop.train_and_evaluate(plan.run_config(bench, run, workdir), rdir)
  except loop.NonFiniteLossError as e:
    logging.warning("[benchmark] %s diverged: %s", run.key, e)
    io.write_json(rdir / report.FAILED_FILE, {"error": str(e)})
    return time.perf_counter() - t0
  wall = time.perf_counter() - t0
  io.write_json(rdir / cost_lib.TIME_FILE, {
      "wall_s": wall, "device": jax.devices()[0].device_kind,
      "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
  return wall


def eta(left: list, work: dict, spent: dict) -> float:
  """Seconds the runs `left` will take: each run's work at its model's rate so far (the rate of
  every model so far for a model not yet trained); spent: {model: [work, seconds]} done."""
  total = [sum(w for w, _ in spent.values()), sum(t for _, t in spent.values())]
  out = 0.0
  for run in left:
    w, t = spent.get(run.model, total)
    out += work[run.key] * t / w if w > 0 else 0.0
  return out


def stage_train(bench, workdir) -> bool:
  runs = plan.all_runs(bench)
  cost_lib.write_plan(workdir, runs, plan.probes(bench))
  todo = [r for r in runs if not finished(workdir, r)]
  work = {r.key: _work(bench, r, workdir) for r in todo}
  total_work, spent, t_start = sum(work.values()), {}, time.perf_counter()
  logging.info("[benchmark train] %d runs, %d finished before, %d to train", len(runs),
               len(runs) - len(todo), len(todo))
  for k, run in enumerate(todo):
    wall = train_one(bench, run, workdir)
    done = spent.setdefault(run.model, [0.0, 0.0])
    done[0], done[1] = done[0] + work[run.key], done[1] + wall
    left = todo[k + 1:]
    logging.info("[benchmark train %d/%d] %s %s in %.1fs (%.0f img/s); %d/%d runs done, "
                 "%s so far, ETA %s", runs.index(run) + 1, len(runs), run.key,
                 "failed" if (plan.run_dir(workdir, run) / report.FAILED_FILE).exists()
                 else "done", wall, work[run.key] / wall if wall > 0 else 0.0,
                 len(runs) - len(left), len(runs), _duration(time.perf_counter() - t_start),
                 _duration(eta(left, work, spent)))
  ran_probe = False
  for protocol, model in plan.probes(bench):
    pdir = plan.probe_dir(workdir, protocol, model)
    if (pdir / "results.json").exists():
      continue
    t0 = time.perf_counter()
    loop.train_and_evaluate(plan.probe_config(bench, protocol, model), pdir)
    io.write_json(pdir / cost_lib.TIME_FILE, {"wall_s": time.perf_counter() - t0,
                                              "device": jax.devices()[0].device_kind})
    logging.info("[benchmark train] cost probe %s/%s in %.1fs", protocol, model,
                 time.perf_counter() - t0)
    ran_probe = True
  if total_work or todo:
    logging.info("[benchmark train] %d runs trained in %s (%.0f img/s overall)", len(todo),
                 _duration(time.perf_counter() - t_start),
                 total_work / max(time.perf_counter() - t_start, 1e-9))
  return bool(todo) or ran_probe


class _SplitCache:
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


def stage_evaluate(bench, workdir) -> bool:
  cache, ran = _SplitCache(), False
  for run in plan.all_runs(bench):
    rdir = plan.run_dir(workdir, run)
    if (rdir / report.FAILED_FILE).exists() or (rdir / evaluate.EVAL_FILE).exists():
      continue
    evaluate.evaluate_run(rdir, cache.get(runs_lib.load_config(rdir).data))
    ran = True
  return ran


def stage_select(bench, workdir) -> bool:
  out = {}
  for run in plan.all_runs(bench):
    ev = io.read_json(plan.run_dir(workdir, run) / evaluate.EVAL_FILE)
    if ev is not None:
      out[run.key] = select_lib.select(ev["grid"])
  io.write_json(pathlib.Path(workdir) / report.SELECTION_FILE, out, indent=1)
  return True


def stage_report(bench, workdir) -> bool:
  report.write_report(bench, workdir)
  return True


# Every stage, in the order it runs: name -> stage(bench, workdir) -> whether it ran.
STAGES = {"train": stage_train, "evaluate": stage_evaluate, "select": stage_select,
          "report": stage_report}


def selected_stages(bench) -> tuple:
  if not bench.only:
    return tuple(STAGES)
  names = plan.split_names(bench.only)
  unknown = [s for s in names if s not in STAGES]
  if unknown:
    raise ValueError(f"config.only names unknown stages {unknown}; stages: {', '.join(STAGES)}.")
  return tuple(sorted(names, key=list(STAGES).index))


def check_stage_inputs(bench, workdir, stages: tuple) -> None:
  """Raises, before anything runs, if evaluate or select is asked for without the runs (or
  measures) they read and without the stage that makes them."""
  if "evaluate" in stages and "train" not in stages:
    missing = [r.key for r in plan.all_runs(bench) if not finished(workdir, r)]
    if missing:
      raise ValueError(f"stage evaluate needs {len(missing)} runs that {workdir} has not trained "
                       f"(e.g. {missing[0]}); run the train stage first "
                       "(--config.only=train,evaluate, or --config.only='' for all).")
  if "select" in stages and "evaluate" not in stages:
    missing = [r.key for r in plan.all_runs(bench)
               if not (plan.run_dir(workdir, r) / report.FAILED_FILE).exists()
               and not (plan.run_dir(workdir, r) / evaluate.EVAL_FILE).exists()]
    if missing:
      raise ValueError(f"stage select needs the measures of {len(missing)} runs (e.g. "
                       f"{missing[0]}); run the evaluate stage first "
                       "(--config.only=evaluate,select, or --config.only='' for all).")


def run_zoo(bench, workdir, *, compilation_cache: bool = False) -> dict:
  """Runs (or resumes) every selected stage; returns {stage: seconds} of stages.json.

  compilation_cache: keep compiled programs in DIR/compilation_cache (use_compilation_cache;
  a process-wide JAX setting, so it is the caller's choice).
  """
  selected_stages(bench)
  plan.check_config(bench, workdir)
  # `only` selects what runs, not what is computed: it may change between calls on a workdir.
  workdir = workdir_lib.claim_workdir(bench, workdir, ignore=("only",))
  if compilation_cache:
    use_compilation_cache(pathlib.Path(workdir).absolute() / "compilation_cache")
  try:
    return _run_stages(bench, workdir)
  finally:
    workdir_lib.release_workdir(workdir)


def record_stage(workdir, times: dict, stage: str, seconds: float) -> None:
  """Adds a stage's wall time to DIR/stages.json (times: what it holds so far, updated)."""
  times[stage] = {"seconds": seconds, "device": jax.devices()[0].device_kind,
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
  layout.write_stage_times(workdir, times)


def _run_stages(bench, workdir) -> dict:
  stages = selected_stages(bench)
  check_stage_inputs(bench, workdir, stages)
  times, t_start = layout.read_stage_times(workdir), time.perf_counter()
  for i, stage in enumerate(stages, 1):
    logging.info("[benchmark %d/%d] stage %s ...", i, len(stages), stage)
    t0 = time.perf_counter()
    ran = STAGES[stage](bench, workdir)
    if ran:
      record_stage(workdir, times, stage, time.perf_counter() - t0)
    logging.info("[benchmark %d/%d] stage %s %s in %.1fs (benchmark so far %.1fs)", i,
                 len(stages), stage, "done" if ran else "already done, skipped",
                 time.perf_counter() - t0, time.perf_counter() - t_start)
  if "report" in stages:  # Again, for the report's own stage time (the figure is unchanged).
    report.write_report(bench, workdir, figure=False)
  return times


def use_compilation_cache(path) -> None:
  """Keeps compiled programs in `path` (JAX's persistent cache, every program however fast it
  compiled): the benchmark compiles the same program once per ratio, and a resumed run again."""
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.reset_cache()
