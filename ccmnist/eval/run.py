"""evaluate_training_run(workdir): every metric of a finished training workdir -> DIR/eval.json,
figures."""

import json
import pathlib
import time

from absl import logging
import jax
import numpy as np

from ccmnist import plots
from ccmnist.data import splits as splits_lib
from ccmnist.eval import metrics
from ccmnist.eval import predict as predict_lib
from ccmnist.eval import color_swap
from ccmnist.plots import eval as eval_plots
from ccmnist.train import runs
from ccmnist.util import io
from ccmnist.util import stats

# Headline numbers, per split, averaged over the seeds of the headline grid point
# (runs.headline_index) in eval.json's summary.
SUMMARY_KEYS = ("accuracy", "aligned", "conflicting", "unbiased_equivalent", "worst_class")


def evaluate_params(forward, params, splits: dict, *, spec, batch_size: int = 1000,
                    known_preds: dict | None = None) -> dict:
  """{split: split_metrics} of one model on every split in `splits` (see SPLIT_NAMES).

  known_preds: {split: [n] predictions} already made by these params (the training loop's last
  evaluation); a split without them is predicted here.
  """
  out = {}
  for name in splits_lib.SPLIT_NAMES:
    if name not in splits:
      continue
    s = splits[name]
    preds = (known_preds or {}).get(name)
    if preds is None or len(preds) != len(s["labels"]):
      preds = predict_lib.predict_logits(forward, params, s["images"],
                                         batch_size=batch_size).argmax(-1)
    out[name] = metrics.split_metrics(np.asarray(preds, np.int64), s["labels"], s["aligned"],
                                      spec=spec)
  return out


def read_curves(workdir, *, replica: int = 0) -> dict:
  """{'epoch': [...], split: [...]} accuracies per epoch of one replica, from metrics.jsonl."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir.")
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  rows = [r for r in rows if r["accuracy"]]  # The evaluated epochs (train.eval_every_epochs).
  curves = {"epoch": [r["epoch"] for r in rows]}
  # Splits evaluated at every such epoch (the train split may be evaluated after the last only).
  for name in (rows[0]["accuracy"] if rows else {}):
    if all(name in r["accuracy"] for r in rows):
      curves[name] = [r["accuracy"][name][replica] for r in rows]
  return curves


def _mean(values):
  return stats.mean_std(values)["mean"]


def _summary(config, per_replica: list) -> dict:
  """The headline grid point, averaged over its seeds (the replicas of results.json's
  'accuracy')."""
  g = runs.headline_index(config)
  first = [r for r in per_replica if r["replica"] // config.num_seeds == g]
  out = {"headline_lam": runs.headline_lam(config)}
  out.update({name: {k: _mean([r["splits"][name][k] for r in first]) for k in SUMMARY_KEYS}
         for name in first[0]["splits"]})
  swaps = [r["color_swap"] for r in first]
  out["color_swap_3_brown_pred_8"] = _mean([cs["three_brown"]["p_pred_8"] for cs in swaps])
  out["color_swap_3_brown_pred_3"] = _mean([cs["three_brown"]["p_pred_3"] for cs in swaps])
  out["color_swap_off_diagonal_p_color"] = _mean([cs["off_diagonal_p_color"] for cs in swaps])
  return out


# The splits drawn as confusion figures: the two test sets the study reports.
CONFUSION_SPLITS = ("test_easy", "test_hard")


def evaluate_training_run(workdir, *, n_per_digit: int = 100, probe_seed: int = 0,
                 batch_size: int = 1000, figures: bool = True, figure_replica: int = 0) -> dict:
  """Evaluates every replica of a training workdir; writes DIR/eval.json and DIR/figures/.

  Figures (of replica `figure_replica`): confusion_<split>.png (the CONFUSION_SPLITS),
  color_swap.png, training_curves.png.
  The probe uses the first `n_per_digit` MNIST test digits of each class (fewer if the data
  source has fewer), colored like the run's data (same mode, noise and background range).
  """
  t0 = time.perf_counter()
  workdir = pathlib.Path(workdir)
  model, params_K, config = runs.load_run(workdir, replica=None)
  num_replicas = len(runs.replicas(config))
  if not 0 <= figure_replica < num_replicas:
    raise ValueError(f"figure_replica {figure_replica} out of range: the run has "
                     f"{num_replicas} replicas.")
  splits = splits_lib.get_splits(config.data)
  grey, labels = splits_lib.load_grey(config.data, "test")
  spec = splits_lib.spec(config.data)
  available = int(np.bincount(labels, minlength=spec.num_classes).min())
  if available < n_per_digit:
    logging.warning("Only %d test digits of some class; the color-swap probe uses %d per cell.",
                    available, available)
    n_per_digit = available
  coloring_kw = splits_lib.coloring_kwargs(config.data)

  forward = predict_lib.make_forward(model)
  preds_K = runs.load_predictions(workdir)
  per_replica = []
  for r in runs.replicas(config):
    params = jax.tree_util.tree_map(lambda x, i=r["replica"]: x[i], params_K)
    per_replica.append({
        **r,
        "splits": evaluate_params(forward, params, splits, spec=spec, batch_size=batch_size,
                                  known_preds={n: p[r["replica"]] for n, p in preds_K.items()}),
        "color_swap": color_swap.color_swap_probe(forward, params, grey, labels,
                                             n_per_digit=n_per_digit, seed=probe_seed,
                                             batch_size=batch_size, num_classes=spec.num_classes,
                                             color_class=spec.color_class, **coloring_kw),
    })
  result = {"workdir": str(workdir), "summary": _summary(config, per_replica),
            "replicas": per_replica, "figure_replica": figure_replica}
  logging.info("eval of %s: %s", workdir, json.dumps(result["summary"]))
  if figures:
    _figures(workdir, per_replica[figure_replica], figure_replica,
             point_in_title=len(per_replica) > 1, grey=bool(config.data.get("grayscale")))
  result["eval_time_s"] = time.perf_counter() - t0
  # Written last: a study stage that finds eval.json takes the figures as done too.
  io.write_json(workdir / "eval.json", result, indent=1)
  return result


def _figures(workdir, rep: dict, replica: int, *, point_in_title: bool, grey: bool) -> None:
  """DIR/figures/confusion_<split>.png (CONFUSION_SPLITS), color_swap.png, training_curves.png
  of one replica; point_in_title: name its grid point (its lr on an lr grid, else its λ);
  grey: the run's images are grey, so its color-swap probe's 'painted' colors are greyed too."""
  fig_dir = workdir / "figures"
  point = f"lr {rep['lr']:g}" if "lr" in rep else f"λ {rep['lam']:g}"
  suffix = f", {point}" if point_in_title else ""
  for name in (n for n in CONFUSION_SPLITS if n in rep["splits"]):
    m = rep["splits"][name]
    plots.save_figure(eval_plots.confusion_figure(
        np.asarray(m["confusion"]), title=f"{name}: accuracy {m['accuracy']:.3f}{suffix}"),
        fig_dir / f"confusion_{name}.png")
  cs = rep["color_swap"]
  plots.save_figure(eval_plots.color_swap_figure(
      np.asarray(cs["p_digit"]), np.asarray(cs["p_color"]), n_per_cell=cs["n_per_cell"],
      grey=grey),
      fig_dir / "color_swap.png")
  plots.save_figure(eval_plots.training_curves_figure(
      {workdir.name: read_curves(workdir, replica=replica)}), fig_dir / "training_curves.png")
