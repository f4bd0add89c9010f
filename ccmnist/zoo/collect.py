"""What the benchmark's stages wrote, read once into the dict that results.json holds.

Each run's failed.json, results.json, config, timing and measures (benchmark_eval.json), with its
selections from selection.json, become one record (collect_run); findings.py and sections.py read
these records, never the run files.
"""

import pathlib
import time

import ml_collections

from ccmnist import pipeline
from ccmnist.report import markdown
from ccmnist.train import runs as runs_lib
from ccmnist.util import io
from ccmnist.zoo import cost as cost_lib
from ccmnist.zoo import early_stop
from ccmnist.zoo import evaluate
from ccmnist.zoo import plan
from ccmnist.zoo import published

SELECTION_FILE = "selection.json"
FAILED_FILE = "failed.json"


def read_selection(workdir) -> dict:
  """{run key: its selections} of selection.json (the select stage's), {} before it ran."""
  return io.read_json(pathlib.Path(workdir) / SELECTION_FILE, default={})


def collect_run(bench, workdir, run: plan.Run, selection: dict) -> dict:
  """Everything the benchmark knows of one run: status, cost, measures, selections."""
  workdir = pathlib.Path(workdir)
  rdir = plan.run_dir(workdir, run)
  entry = bench.zoo[run.entry]
  out = {"protocol": run.protocol, "model": run.model, "ratio": run.ratio, "rho": run.rho,
         "entry": run.entry, "loss": entry.loss, "kind": plan.kind_of(bench, run.entry),
         "dir": str(rdir.relative_to(workdir)), "status": "missing"}
  failed = io.read_json(rdir / FAILED_FILE)
  if failed is not None:
    return {**out, "status": "failed", "error": failed.get("error")}
  results = io.read_json(rdir / "results.json")
  if results is None:
    return out
  config = runs_lib.load_config(rdir)
  timing = io.read_json(rdir / cost_lib.TIME_FILE) or {}
  out.update(status="done", epochs=config.train.epochs, num_replicas=len(runs_lib.replicas(config)),
             lam_grid=list(runs_lib.lam_grid(config)),
             cost=cost_lib.run_cost(rdir, config, timing.get("wall_s")))
  ev = io.read_json(rdir / evaluate.EVAL_FILE)
  if ev is not None:  # Every evaluated epoch's measures stay in the run's own EVAL_FILE.
    out.update(grid=[{k: v for k, v in p.items() if k != "by_epoch"} for p in ev["grid"]],
               replicas=ev["replicas"],
               evaluated_epochs=[r["epoch"] for r in ev["grid"][0].get("by_epoch", [])])
  split = io.read_json(rdir / runs_lib.INFERRED_SPLIT_FILE)
  if split is not None:
    out["inferred_split"] = split
  out["selection"] = selection.get(run.key)
  return out


def planned_runs(bench, *, own: bool = False) -> list:
  """The runs of bench.project_to (or of bench itself when it names none, or when `own`), as
  cost.project takes them."""
  target = bench.project_to if len(bench.project_to) and not own else bench
  target = _as_bench(target, bench.seed)
  out = []
  for run in plan.all_runs(target):
    entry = target.zoo[run.entry]
    config = plan.run_config(target, run, ".")
    out.append({"key": run.key, "model": run.model, "loss": entry.loss,
                "kind": plan.kind_of(target, run.entry), "examples": cost_lib.examples(config)})
  return out


def _as_bench(target, seed):
  """A plain copy of a config to plan, with `seed` set when it has none."""
  c = ml_collections.ConfigDict(target.to_dict())
  if "seed" not in c:
    c.seed = seed
  return c


def measured_costs(res: dict, workdir) -> list:
  """Measured costs of every finished run and cost probe, as cost.rates takes them."""
  out = [{"model": r["model"], "loss": r["loss"], "kind": r["kind"], **r["cost"]}
         for r in res["runs"].values() if r["status"] == "done" and r.get("cost")]
  for path in sorted((pathlib.Path(workdir) / "cost_probe").glob("*/*/results.json")):
    config = runs_lib.load_config(path.parent)
    timing = io.read_json(path.parent / cost_lib.TIME_FILE) or {}
    out.append({"model": config.model.name, "loss": config.loss.name, "kind": "train",
                "probe": True, **cost_lib.run_cost(path.parent, config, timing.get("wall_s"))})
  return out


def workdir_costs(workdir) -> list:
  """measured_costs of a benchmark workdir, finished or not, read with its own config.json."""
  workdir = pathlib.Path(workdir)
  config = io.read_json(workdir / "config.json")
  if config is None:
    raise ValueError(f"{workdir} holds no config.json; name the workdir of a benchmark run.")
  bench = ml_collections.ConfigDict(config)
  return measured_costs(collect(bench, workdir), workdir)


def measured_costs_of(path) -> list:
  """The measured run costs of a benchmark workdir (or a folder kept by launch.zoo --keep), or
  of a finished benchmark's results.json (its cost.measured records)."""
  path = pathlib.Path(path)
  if not path.is_file():
    return workdir_costs(path)
  record = io.read_json(path)
  if not isinstance(record, dict) or "measured" not in record.get("cost", {}):
    raise ValueError(f"{path} is not a benchmark's results.json (no cost.measured); pass a "
                     "benchmark workdir or its results.json.")
  return record["cost"]["measured"]


def collect(bench, workdir) -> dict:
  """results.json's dict, less its findings (findings.py decides them)."""
  workdir = pathlib.Path(workdir)
  selection = read_selection(workdir)
  runs = {run.key: collect_run(bench, workdir, run, selection) for run in plan.all_runs(bench)}
  res = {"config": bench.to_dict(), "profile": bench.size, "runs": runs,
         "early_stopping": early_stop.rows(bench, workdir, selection),
         "stages": pipeline.read_stage_times(workdir), "environment": markdown.environment(),
         "command": pipeline.read_command(workdir), "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
         "published": {"tables": published.tables(), "unquoted": dict(published.UNQUOTED),
                       "protocols": published.PROTOCOLS}}
  measured = measured_costs(res, workdir)
  res["cost"] = {
      "measured": measured,
      "train_wall_s": float(sum(m["wall_s"] or 0.0 for m in measured)),
      "projected_profile": "full" if len(bench.project_to) else bench.size,
      "projection": cost_lib.project(measured, planned_runs(bench))}
  return res
