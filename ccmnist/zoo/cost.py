"""What each run cost, and what another profile's runs would cost at the same rates.

A run's cost is its wall time: a fixed part (compiling, data, evaluation, checkpoints) plus its
training examples (steps x batch x epochs x replicas) at its steady rate, read from the epochs
after the first (the first epoch also compiles the step). A planned run is priced at the rate
measured for its model and method; a method not measured on that model at the model's ERM rate
times the method's cost relative to ERM on the models where both were measured.
"""

import json
import pathlib
import time

import numpy as np

from ccmnist.report import markdown
from ccmnist.train import runs as runs_lib
from ccmnist.util import io

TIME_FILE = "benchmark_time.json"
CALL_FILE = "benchmark_call_{}.json"  # One per call that trains the run: 0, 1, ...
PLAN_FILE = "train_plan.json"


def _calls(run_dir) -> list:
  run_dir = pathlib.Path(run_dir)
  out = []
  while (run_dir / CALL_FILE.format(len(out))).exists():
    out.append(io.read_json(run_dir / CALL_FILE.format(len(out))))
  return out


def open_call(run_dir) -> None:
  """Records a training call's start in a new run_dir/CALL_FILE (no earlier file is touched, so
  a sitting stopped by a full disk damages none). The call before, when it was killed part way,
  ends at its last epoch's metrics line, read now and kept in this call's file: the epochs it
  finished are resumed from, and what it did after them is redone, so it is not the run's cost."""
  run_dir = pathlib.Path(run_dir)
  calls = _calls(run_dir)
  before = None
  if calls and calls[-1]["end"] is None:
    metrics = run_dir / "metrics.jsonl"
    last = metrics.stat().st_mtime if metrics.exists() else calls[-1]["start"]
    before = max(calls[-1]["start"], last)
  io.write_json(run_dir / CALL_FILE.format(len(calls)),
                {"start": time.time(), "end": None, "end_of_call_before": before,
                 "code": markdown.code_version()})


def codes(run_dir) -> list:
  """The commits of the code that trained a run, one per call ('unrecorded' for a call made
  before calls recorded it)."""
  return [c.get("code", "unrecorded") for c in _calls(run_dir)]


def close_call(run_dir, wall_s: float) -> tuple:
  """Closes the open call after wall_s seconds; returns the run's wall time over all its calls
  and the number of calls."""
  run_dir = pathlib.Path(run_dir)
  calls = _calls(run_dir)
  calls[-1]["end"] = calls[-1]["start"] + wall_s
  io.write_json(run_dir / CALL_FILE.format(len(calls) - 1), calls[-1])
  ends = [c["end"] if c["end"] is not None else (nxt["end_of_call_before"] or c["start"])
          for c, nxt in zip(calls, calls[1:] + [None])]
  return float(sum(e - c["start"] for c, e in zip(calls, ends))), len(calls)


def write_plan(workdir, runs, probes) -> None:
  """DIR/train_plan.json: the key of every run in training order and every cost probe
  (protocol/model), written before any trains, so that a benchmark stopped part way says what it
  had left; each run's cost is then in its dir (TIME_FILE, metrics.jsonl)."""
  io.write_json(pathlib.Path(workdir) / PLAN_FILE,
                {"runs": [r.key for r in runs], "probes": [f"{p}/{m}" for p, m in probes]},
                indent=1)


def examples(config) -> int:
  """Training examples of a run over every replica and epoch."""
  steps = config.data.train_size // config.train.batch_size
  return steps * config.train.batch_size * config.train.epochs * len(runs_lib.replicas(config))


def steady_rate(run_dir) -> tuple:
  """(examples/s over every replica, whether it excludes the compiling first epoch) from
  metrics.jsonl; (None, False) without one."""
  path = pathlib.Path(run_dir) / "metrics.jsonl"
  if not path.exists():
    return None, False
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  rates = [r["train_img_per_s"] for r in rows if "train_img_per_s" in r]
  if not rates:
    return None, False
  steady = rates[1:] or rates
  return float(np.median(steady)), len(rates) > 1


def run_cost(run_dir, config, wall_s: float | None) -> dict:
  """{'wall_s', 'train_time_s', 'examples', 'rate', 'rate_steady', 'fixed_s', 'code'} of one
  run (code: the commits of its calls, codes())."""
  rate, steady = steady_rate(run_dir)
  n = examples(config)
  train_time = None
  path = pathlib.Path(run_dir) / "results.json"
  if path.exists():
    train_time = json.loads(path.read_text()).get("train_time_s")
  fixed = None
  if wall_s is not None and rate:
    fixed = max(0.0, wall_s - n / rate)
  return {"wall_s": wall_s, "train_time_s": train_time, "examples": n, "rate": rate,
          "rate_steady": steady, "fixed_s": fixed, "code": sorted(set(codes(run_dir)))}


def _median(values):
  values = [v for v in values if v is not None]
  return float(np.median(values)) if values else None


def rates(measured: list) -> dict:
  """{'rate': {(model, loss): examples/s}, 'fixed': {model: s}, 'relative': {loss: x ERM},
  'refit': {model: s}} from measured costs ({'model', 'loss', 'kind', **run_cost})."""
  trained = [m for m in measured if m["kind"] == "train" and m.get("rate")]
  rate = {}
  for key in {(m["model"], m["loss"]) for m in trained}:
    rate[key] = _median([m["rate"] for m in trained if (m["model"], m["loss"]) == key])
  fixed = {model: _median([m["fixed_s"] for m in trained if m["model"] == model])
           for model in {m["model"] for m in trained}}
  relative = {}
  for loss in {m["loss"] for m in trained}:
    ratios = [rate[(model, loss)] / rate[(model, "erm")] for model, other in rate
              if other == loss and (model, "erm") in rate]
    relative[loss] = _median(ratios)
  refits = [m for m in measured if m["kind"] != "train" and m.get("wall_s") is not None]
  refit = {model: _median([m["wall_s"] for m in refits if m["model"] == model])
           for model in {m["model"] for m in refits}}
  return {"rate": rate, "fixed": fixed, "relative": relative, "refit": refit}


def price(run: dict, table: dict) -> float | None:
  """Seconds a planned run ({'model', 'loss', 'kind', 'examples'}) costs at `table`'s rates;
  None when its model (or, for a refit, any refit) was not measured."""
  model, loss = run["model"], run["loss"]
  if run["kind"] != "train":
    if model in table["refit"]:
      return table["refit"][model]
    return max(table["refit"].values()) if table["refit"] else None
  rate = table["rate"].get((model, loss))
  if rate is None and (model, "erm") in table["rate"] and table["relative"].get(loss):
    rate = table["rate"][(model, "erm")] * table["relative"][loss]
  if rate is None:
    return None
  return (table["fixed"].get(model) or 0.0) + run["examples"] / rate


def project(measured: list, planned: list) -> dict:
  """The planned runs priced at the measured rates: {'total_s', 'runs', 'priced',
  'unpriced' (keys of runs with no measured rate), 'by_model' {model: s}, 'by_run' {key: s}}."""
  table = rates(measured)
  by_run = {run["key"]: price(run, table) for run in planned}
  unpriced = [key for key, s in by_run.items() if s is None]
  by_run = {key: s for key, s in by_run.items() if s is not None}
  by_model = {}
  for run in planned:
    if run["key"] in by_run:
      by_model[run["model"]] = by_model.get(run["model"], 0.0) + by_run[run["key"]]
  return {"total_s": float(sum(by_run.values())), "runs": len(planned),
          "priced": len(by_run), "unpriced": unpriced, "by_model": by_model, "by_run": by_run,
          "rates": {f"{model}/{loss}": r for (model, loss), r in table["rate"].items()},
          "relative_to_erm": table["relative"]}


def walls_of(workdir) -> dict:
  """{run key: wall seconds over its calls} of the finished runs of a benchmark workdir (or a
  folder kept by launch.zoo --keep): those with a TIME_FILE."""
  root = pathlib.Path(workdir) / "runs"
  return {path.parent.relative_to(root).as_posix(): json.loads(path.read_text())["wall_s"]
          for path in sorted(root.glob(f"*/*/*/*/{TIME_FILE}"))}


def against(by_run: dict, walls: dict) -> dict:
  """A projection's per-run seconds ({key: s}) beside the measured wall times of the runs that
  finished ({key: s}): {'rows': [(key, projected, measured)], 'finished', 'projected_s' and
  'measured_s' over the finished runs, 'left_s' (projected, the rest)}."""
  rows = [(key, s, walls[key]) for key, s in by_run.items() if key in walls]
  return {"rows": rows, "finished": len(rows),
          "projected_s": float(sum(p for _, p, _ in rows)),
          "measured_s": float(sum(m for _, _, m in rows)),
          "left_s": float(sum(s for key, s in by_run.items() if key not in walls))}
