"""What the study's stages wrote, read once into the dict that results.json holds.

Each training run's results.json and eval.json become one record (collect_run); findings.py and
sections.py read these records, never the run files. Numbers are mean +- std over seeds, with
the per-seed values beside (stats.over_seeds).
"""

import json
import pathlib
import time

from ccmnist import layout
from ccmnist import pipeline
from ccmnist.eval import run as eval_run
from ccmnist.report import markdown
from ccmnist.train import runs as runs_lib
from ccmnist.util import io
from ccmnist.util import stats

SPLITS = ("train", "test_easy", "test_hard")
TERMS = ("train_ce", "train_penalty", "penalty_ratio")


def collect_run(study, workdir, name: str) -> dict | None:
  """Per grid point (its lambda, and lr with an lr grid), mean +- std over seeds of every
  accuracy we report and each seed's training loss per epoch; None when the run has not
  finished."""
  rdir = layout.run_dir(workdir, name)
  results, ev = io.read_json(rdir / "results.json"), io.read_json(rdir / "eval.json")
  if results is None:
    return None
  config = layout.run_config(study, name)
  losses = train_losses(rdir)
  grid = []
  for g, at in enumerate(runs_lib.grid_points(config)):
    reps = [r for r in runs_lib.replicas(config) if r["replica"] // config.num_seeds == g]
    point = {**at, "seeds": [r["seed"] for r in reps], "accuracy": {}}
    if losses:
      point["train_loss"] = [[row[r["replica"]] for row in losses] for r in reps]
    final = {r["replica"]: r["accuracy"] for r in results["replicas"]}
    for split in final[reps[0]["replica"]]:
      point["accuracy"][split] = stats.over_seeds([final[r["replica"]][split] for r in reps])
    # The training objective's terms over the last epoch (train_ce, train_penalty and
    # penalty_ratio = lam x penalty / ce), where the run recorded them.
    terms = {r["replica"]: r for r in results["replicas"]}
    for key in TERMS:
      values = [terms[r["replica"]].get(key) for r in reps]
      if any(v is not None for v in values):
        point[key] = stats.over_seeds(values)
    if ev is not None:
      evr = {r["replica"]: r for r in ev["replicas"]}
      for split in SPLITS:
        for key in ("aligned", "conflicting", "unbiased_equivalent", "worst_class"):
          point["accuracy"][f"{split}/{key}"] = stats.over_seeds(
              [evr[r["replica"]]["splits"][split][key] for r in reps])
      point["color_swap_3_brown_pred_8"] = stats.over_seeds(
          [evr[r["replica"]]["color_swap"]["three_brown"]["p_pred_8"] for r in reps])
    grid.append(point)
  return {"grid": grid, "downstream_lam": layout.downstream_lam(study, name),
          "train_time_s": results.get("train_time_s"), "epochs": results.get("epochs"),
          "curves": str(rdir / "metrics.jsonl")}


def train_losses(rdir) -> list:
  """[epoch][replica] mean training loss of each epoch (metrics.jsonl), [] without it."""
  path = pathlib.Path(rdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["train_loss"] for line in path.read_text().splitlines()
          if line.strip()]


def point_at(run: dict, lam=None) -> dict:
  """The grid point of a run record at `lam` (default: the study's λ for that run)."""
  lam = run["downstream_lam"] if lam is None else lam
  return next(p for p in run["grid"] if p["lam"] == lam)


def model_selection(run: dict) -> dict:
  """Which lambda each criterion picks, and the hard-test accuracy it then reports."""
  out = {}
  for criterion in ("test_hard", "val", "val_unbiased"):
    scored = [(p["accuracy"][criterion]["mean"], p) for p in run["grid"]
              if criterion in p["accuracy"]]
    if not scored:
      continue
    best = max(scored, key=lambda sp: sp[0])[1]
    out[criterion] = {"lam": best["lam"], "test_hard": best["accuracy"]["test_hard"]}
  return out


def _get(entry: dict, path: str):
  """entry['a']['b'][i] for path 'a/b/i' (an integer part indexes a list); None if missing."""
  for part in path.split("/"):
    if isinstance(entry, list):
      entry = entry[int(part)] if part.isdigit() and int(part) < len(entry) else None
    elif isinstance(entry, dict):
      entry = entry.get(part)
    if entry is None:
      return None
  return entry


def seed_summaries(attack: dict | None, interpret: dict | None) -> dict:
  """{'attack': {model: {measure: over_seeds}}, 'interpret': {...}}: the numbers the report's
  attack and interpretability tables print, mean +- std over every analysed seed with the
  per-seed values beside (stats.over_seeds; a minimal epsilon not found, null, is skipped)."""
  out = {"attack": {}, "interpret": {}}
  if attack and attack.get("models"):
    eps = attack["study_eps"]
    suite = (attack.get("suite") or {}).get("models") or {}
    for name, m in attack["models"].items():
      seeds = m.get("seeds") or [m]
      k = seeds[0]["sweep"]["epsilons"].index(eps)
      paths = {f"success_prob@{eps:g}": f"sweep/success_prob/{k}",
               f"success_argmax@{eps:g}": f"sweep/success_argmax/{k}",
               "min_eps_median": "min_eps/median",
               "color_shift_share": "anatomy/color_shift_share",
               "stroke_energy_share": "anatomy/stroke_energy_share",
               "clean_mean_max_softmax": "clean_confidence/mean_max_softmax",
               "clean_share_above_threshold": "clean_confidence/share_above_threshold"}
      out["attack"][name] = {key: stats.over_seeds([_get(e, p) for e in seeds])
                             for key, p in paths.items()}
      if name in suite:
        su = suite[name].get("seeds") or [suite[name]]
        out["attack"][name].update({
            key: stats.over_seeds([_get(e, p) for e in su]) for key, p in (
                ("suite_worst_robust_accuracy", "worst_robust_accuracy"),
                ("suite_targeted_worst", "targeted/worst"))})
  for name, m in ((interpret or {}).get("models") or {}).items():
    seeds = m.get("seeds") or [m]
    paths = {f"spread_{sp}": f"spread/{sp}/pred/entropy_nats_mean"
             for sp in ("test_hard", "test_easy")}
    paths["recolor_changed"] = "representation/input_swap/changed"
    for layer in (_get(seeds[0], "representation/layers") or {}):
      paths.update({f"{layer}/{key}": f"representation/layers/{layer}/{p}" for key, p in (
          ("probe_color", "probe/color"), ("probe_digit", "probe/digit"),
          ("invariance_ratio", "invariance/ratio"))})
    out["interpret"][name] = {key: stats.over_seeds([_get(e, p) for e in seeds])
                              for key, p in paths.items()}
  return out


def collect(study, workdir) -> dict:
  """results.json's dict, less its findings (None here: findings.py decides them)."""
  workdir = pathlib.Path(workdir)
  runs = {n: collect_run(study, workdir, n) for n in layout.train_runs(study)}
  runs = {n: r for n, r in runs.items() if r is not None}
  interpret = io.read_json(layout.analysis_dir(workdir, "interpret") / "interpret.json")
  attack = io.read_json(layout.analysis_dir(workdir, "attack") / "attack.json")
  return {
      "config": study.to_dict(),
      "runs": runs,
      # λ grids only: an lr grid's choice is the step-size section's (findings.step_size_rows).
      "model_selection": {n: model_selection(r) for n, r in runs.items()
                          if len(r["grid"]) > 1 and "lr" not in r["grid"][0]},
      "interpret": interpret,
      "attack": attack,
      # The analysed seeds' spread, beside the first seed's numbers in the two records above.
      "over_seeds": seed_summaries(attack, interpret),
      "stages": pipeline.read_stage_times(workdir),
      "findings": None,
      "environment": markdown.environment(),
      "command": pipeline.read_command(workdir),
      "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
  }


def collect_curves(study, workdir, names) -> dict:
  """{name: per-epoch accuracies} of the replica that stands for each run (metrics.jsonl)."""
  return {name: eval_run.read_curves(layout.run_dir(workdir, name),
                                     replica=layout.selected_replica(study, name))
          for name in names}


def read_other(study) -> dict | None:
  """The results.json of the study that config.compare_with names, or None when it names none."""
  if not study.compare_with:
    return None
  other = io.read_json(study.compare_with)
  if other is None:
    raise FileNotFoundError(f"config.compare_with={study.compare_with!r} does not exist; give "
                            "another study's results.json, or '' to compare with none.")
  return other
