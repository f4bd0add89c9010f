"""A benchmark's finished runs without their parameters: kept in a folder, restored into a workdir.

A benchmark longer than one sitting of one machine resumes elsewhere from what was kept (a
results folder under version control, say), not from the workdir:

  save     measures every finished run as the evaluate stage does (benchmark_eval.json) and
           copies its files, less what is large and read by no later stage once it is measured:
           checkpoints, TensorBoard events, predictions (the last epoch's and every evaluated
           epoch's) and DFR's refit.npz. The workdir's
           own files come too (config.json, command.json, stages.json, results.json, ...).
  restore  copies the runs into a workdir, new or holding the same config, with the
           workdir's config, command, stage times and plan (the report is written again). A run
           whose parameters a stage still to run will read is left out, so that it trains again
           (the same seeds train the same run): one that an unfinished run needs (JTT's
           identification run, the ERM run of DFR and EIIL), and, when the analyse stage will
           run, one without its analysis.json.

Unfinished runs are never saved: their checkpoints stay in the workdir they trained in.

  reconfigure  points a folder (kept, or a workdir) at a config that trains some methods
           differently (a new tuning, or runs that must train again: entries_to_retrain), by
           dropping exactly those methods' runs and writing the new config
           (tools/reconfigure_kept.py).
"""

import dataclasses
import json
import pathlib
import shutil

from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib
from ccmnist.zoo import analyse as analyse_lib
from ccmnist.zoo import collect
from ccmnist.zoo import cost
from ccmnist.zoo import plan
from ccmnist.zoo import report
from ccmnist.zoo import stages

# Left behind: parameters (and the refit's), per-example outputs, event files, locks.
HEAVY = ("checkpoints", "tensorboard", "predictions.npz", "epoch_predictions", "refit.npz",
         ".lock")
# The workdir's own files that restore brings back (the report's are written again, and what
# else a kept folder holds, its README say, never enters the workdir, so no save overwrites it).
RESTORED = ("config.json", "command.json", "stages.json", cost.PLAN_FILE)
DONE_FILES = ("results.json", report.FAILED_FILE)  # finished() reads these.


def finished(rdir: pathlib.Path) -> bool:
  return any((rdir / name).exists() for name in DONE_FILES)


def _heavy(name: str) -> bool:
  """HEAVY, or hidden: a lock, a file being written (io.py's temporary files)."""
  return name in HEAVY or name.startswith(".")


def _copy_light(src: pathlib.Path, dst: pathlib.Path) -> int:
  """Copies src's files (recursively) to dst, less HEAVY, each atomically and the files that
  mark a run finished last (a copy stopped part way leaves the run unfinished); returns how
  many."""
  files = [p for p in src.rglob("*") if p.is_file() and not any(
      _heavy(part) for part in p.relative_to(src).parts)]
  files.sort(key=lambda p: (p.name in DONE_FILES, str(p)))
  for path in files:
    io.write_bytes(dst / path.relative_to(src), path.read_bytes())
  return len(files)


def check_config(mine: dict, folder) -> None:
  """Raises ValueError unless `folder` holds no config.json or the benchmark config `mine` (up
  to stages.IGNORE)."""
  theirs = io.read_json(pathlib.Path(folder) / "config.json")
  if theirs is None:
    return
  diff = workdir_lib.diff_configs(theirs, mine, ignore=stages.IGNORE)
  if diff:
    raise ValueError(f"{folder} holds another benchmark's config ({'; '.join(diff[:3])}); "
                     f"keep each benchmark in a folder of its own.")


def _check_same_config(src: pathlib.Path, dst: pathlib.Path) -> None:
  check_config(io.read_json(src / "config.json"), dst)


def _bench(folder: pathlib.Path):
  return workdir_lib.load_config(folder, kind="benchmark")


def _run_dirs(bench, root: pathlib.Path) -> dict:
  """{Run or probe key: its dir under root}: every run of the config and every cost probe."""
  out = {run: plan.run_dir(root, run) for run in plan.all_runs(bench)}
  out.update({f"probe {p}/{m}": plan.probe_dir(root, p, m) for p, m in plan.probes(bench)})
  return out


def save(workdir, dest) -> dict:
  """Copies a benchmark workdir's finished runs and own files into dest (created, or holding
  the same benchmark); returns {'runs': saved, 'left': unfinished}."""
  workdir, dest = pathlib.Path(workdir), pathlib.Path(dest)
  bench = _bench(workdir)
  _check_same_config(workdir, dest)
  saved, left, cache = [], [], stages.SplitCache()
  for key, rdir in _run_dirs(bench, workdir).items():
    if not finished(rdir):
      left.append(key)
      continue
    if isinstance(key, plan.Run) and not stages.measured(workdir, key):
      stages.evaluate_run(workdir, key, cache)
    _copy_light(rdir, dest / rdir.relative_to(workdir))
    saved.append(key)
  for path in workdir.iterdir():
    if path.is_file() and not _heavy(path.name):
      io.write_bytes(dest / path.name, path.read_bytes())
    elif path.is_dir() and not _heavy(path.name) and path.name not in ("runs", "cost_probe"):
      _copy_light(path, dest / path.name)
  return {"runs": saved, "left": left}


def left_out(bench, src: pathlib.Path, *, analyse: bool) -> dict:
  """{Run: why} for the runs finished in src that restore leaves to train again."""
  dirs = {r: d for r, d in _run_dirs(bench, src).items() if isinstance(r, plan.Run)}
  done = {r for r, d in dirs.items() if finished(d)}
  out = {}
  for run in plan.all_runs(bench):
    need = plan.needed_run(bench, run)
    if run not in done and need in done:
      out.setdefault(need, f"{run.entry} is unfinished and reads its parameters")
  if analyse:  # A row's analysed point may lie in a family member's run (analyse.py).
    for row in analyse_lib.rows(bench):
      if row in done and not (dirs[row] / analyse_lib.ANALYSIS_FILE).exists():
        for entry in (row.entry, *plan.members_of(bench, row.entry)):
          run = dataclasses.replace(row, entry=entry)
          if run in done and not (dirs[run] / report.FAILED_FILE).exists():
            out.setdefault(run, f"the analyse stage reads its parameters ({row.entry} is not "
                           "analysed yet)")
  return out


def restore(src, workdir, *, analyse: bool = True) -> dict:
  """Copies what save kept in src into workdir (created, or holding the same benchmark); its
  own unfinished runs and checkpoints are kept. Returns {'runs': restored, 'left_out': {key:
  why}}. analyse: whether the analyse stage will run on workdir."""
  src, workdir = pathlib.Path(src), pathlib.Path(workdir)
  bench = _bench(src)
  _check_same_config(src, workdir)
  skip = left_out(bench, src, analyse=analyse)
  restored, wdirs = [], _run_dirs(bench, workdir)
  for key, sdir in _run_dirs(bench, src).items():
    wdir = wdirs[key]
    if not finished(sdir) or key in skip or finished(wdir):
      continue
    _copy_light(sdir, wdir)
    restored.append(key)
  for name in RESTORED:
    if (src / name).exists() and not (workdir / name).exists():
      io.write_bytes(workdir / name, (src / name).read_bytes())
  return {"runs": restored, "left_out": {r.key: why for r, why in skip.items()}}


def status(folder, *, measured=None) -> dict:
  """How far a kept (or any) benchmark folder is: {'finished', 'left' (run keys), 'wall_s' (the
  finished runs' measured wall time), 'left_projected_s' (the runs left, priced at the rates of
  `measured`, a workdir or results.json, default the folder's own finished runs; None when no
  run is priced), 'unpriced'}."""
  folder = pathlib.Path(folder)
  bench = _bench(folder)
  runs = plan.all_runs(bench)
  done = [r for r in runs if finished(plan.run_dir(folder, r))]
  left = {r.key for r in runs} - {r.key for r in done}
  walls = [(io.read_json(plan.run_dir(folder, r) / cost.TIME_FILE) or {}).get("wall_s")
           for r in done]
  planned = [p for p in collect.planned_runs(bench, own=True) if p["key"] in left]
  costs = collect.measured_costs_of(folder if measured is None else measured)
  proj = cost.project(costs, planned) if costs and planned else None
  return {"finished": [r.key for r in done], "left": [r.key for r in runs if r.key in left],
          "wall_s": float(sum(w for w in walls if w is not None)),
          "left_projected_s": proj["total_s"] if proj and proj["priced"] else None,
          "unpriced": proj["unpriced"] if proj else sorted(left)}


def describe(keys) -> list:
  return [k.key if isinstance(k, plan.Run) else k for k in keys]


def as_json(out: dict) -> str:
  return json.dumps({k: describe(v) if isinstance(v, list) else v for k, v in out.items()},
                    indent=1)


# ---------------------------------------------------------------- another config

def entries_to_retrain(old: dict, new: dict, retrain=()) -> dict:
  """{entry: why} of the entries whose runs train again under `new` (module docstring); raises
  ValueError when old and new differ outside the zoo entries."""
  outside = workdir_lib.diff_configs({k: v for k, v in old.items() if k != "zoo"},
                                     {k: v for k, v in new.items() if k != "zoo"},
                                     ignore=stages.IGNORE)
  if outside:
    raise ValueError(f"the configs differ outside their zoo entries ({'; '.join(outside[:3])}): "
                     "that is another benchmark; keep it in a folder of its own.")
  unknown = [e for e in retrain if e not in new["zoo"]]
  if unknown:
    raise ValueError(f"--retrain names {unknown}, not entries of the config's zoo.")
  out = {}
  for name in sorted(set(old["zoo"]) | set(new["zoo"])):
    diff = workdir_lib.diff_configs(old["zoo"].get(name, {}), new["zoo"].get(name, {}))
    if diff:
      out[name] = "its entry differs: " + "; ".join(diff[:2])
  out.update({e: "named by --retrain" for e in retrain if e not in out})
  grown = True
  while grown:  # A family's members with their row, and every run that reads a dropped one.
    grown = False
    for name, entry in new["zoo"].items():
      why = ((entry.get("family") in out and f"a member of {entry['family']}'s family") or
             (entry.get("needs") in out and f"it needs the {entry['needs']} run"))
      if name not in out and why:
        out[name], grown = why, True
  return out


def retrain_dirs(folder, entries: dict) -> list:
  """The run directories (runs/<protocol>/<model>/rho<rho>/<entry>) of `entries` in a folder."""
  root = pathlib.Path(folder) / "runs"
  return sorted(p for p in root.glob("*/*/*/*") if p.is_dir() and p.name in entries)


def reconfigure(folder, entries: dict, config_text: str) -> list:
  """Drops the runs of `entries` and command.json from a folder and writes config.json; returns
  the dropped run directories. Written last, so that a stop part way leaves the old config,
  which refuses the new one until this runs again."""
  folder = pathlib.Path(folder)
  dropped = retrain_dirs(folder, entries)
  for path in dropped:
    shutil.rmtree(path)
  (folder / "command.json").unlink(missing_ok=True)
  io.write_text(folder / "config.json", config_text)
  return dropped
