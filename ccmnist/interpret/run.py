"""interpret_runs: the interpretability analyses of trained runs, side by side.

For each named run: Grad-CAM of the study's cases, the Grad-CAM activation spread on the hard
and easy test sets, feature visualization of every channel of every conv layer, channel
selectivity (color vs shape) on a controlled stimulus set, top-k activating test images, and
the model-randomization sanity check with Integrated-Gradients completeness.
Writes out_dir/interpret.json and out_dir/figures/*.png.
"""

import functools
import pathlib
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from ccmnist import models
from ccmnist import plots
from ccmnist.data import coloring
from ccmnist.data import palette as palette_lib
from ccmnist.data import splits as splits_lib
from ccmnist.interpret import featviz
from ccmnist.interpret import gradcam as gradcam_lib
from ccmnist.interpret import selectivity as sel_lib
from ccmnist.plots import interpret as interpret_plots
from ccmnist.train import runs as runs_lib
from ccmnist.util import batches
from ccmnist.util import io

POOL_DESCRIPTIONS = {"mean": "spatial-mean activation", "max": "spatial-max activation",
                     "map": "activation maps"}
SPREAD_SPLITS = ("test_hard", "test_easy")
SPREAD_TARGETS = ("pred", "label")  # Grad-CAM of the predicted class, and of the true one.


@functools.partial(jax.jit, static_argnames=("model",))
def _apply(model, params, images):
  return model.apply({"params": params}, images)


def _logits(model, params, images, batch_size):
  return batches.map_batches(
      lambda x: _apply(model, params, jnp.asarray(x, jnp.float32)), (images,),
      batch_size=batch_size)


def _gradcam(model, params, images, targets, cfg):
  return batches.map_batches(
      lambda x, t: gradcam_lib.gradcam(model, params, x, t, layer=cfg.layer),
      (images, targets), batch_size=cfg.batch_size)


def case_images(data_cfg, cases, seed: int) -> dict:
  """The study's Grad-CAM cases, e.g. ('0', 'red'): a test digit of that class in that color."""
  grey, labels = splits_lib.load_grey(data_cfg, "test")
  rng = np.random.default_rng([seed, 11])
  digits, colors = [], []
  for case in cases:
    digit, color = case.split(":")
    digits.append(int(digit))
    colors.append(palette_lib.color_index(color))
  idx = np.array([rng.choice(np.flatnonzero(labels == d)) for d in digits])
  images = coloring.colorize(grey[idx], np.asarray(colors, np.int32), rng,
                             **splits_lib.coloring_kwargs(data_cfg))
  titles = [f"{palette_lib.COLOR_NAMES[c]} {d}" for d, c in zip(digits, colors)]
  return {"images": images, "labels": np.asarray(digits), "colors": np.asarray(colors),
          "titles": titles}


def _cases(model, params, cases, cfg):
  """Grad-CAM of the predicted class on each case: (json rows, maps, preds, probs)."""
  logits = _logits(model, params, cases["images"], len(cases["images"]))
  probs = np.asarray(jax.nn.softmax(logits))
  preds = logits.argmax(-1)
  probs = probs[np.arange(len(probs)), preds]
  maps = np.asarray(gradcam_lib.gradcam(model, params, cases["images"], preds, layer=cfg.layer))
  rows = [{"case": t, "pred": int(p), "prob": float(q), "entropy_nats": float(h)}
          for t, p, q, h in zip(cases["titles"], preds, probs, gradcam_lib.map_entropy(maps))]
  return rows, maps, preds, probs


def _spread(model, params, split, cfg):
  """(summary, {target: entropy per image}) of the Grad-CAM spread on one split."""
  n = min(cfg.num_eval, len(split["labels"]))
  x, y = split["images"][:n], split["labels"][:n]
  preds = _logits(model, params, x, cfg.batch_size).argmax(-1)
  out, entropies = {"num_images": n, "accuracy": float(np.mean(preds == y))}, {}
  for target_name, targets in zip(SPREAD_TARGETS, (preds, y)):
    maps = _gradcam(model, params, x, targets, cfg)
    out[target_name] = gradcam_lib.spread_summary(maps)
    entropies[target_name] = gradcam_lib.map_entropy(maps)
  return out, entropies


def _sanity(model, params, split, cfg, name, fig_dir):
  s = cfg.sanity
  n = min(s.num_images, len(split["labels"]))
  x = jnp.asarray(split["images"][:n], jnp.float32)
  preds = jnp.asarray(_logits(model, params, np.asarray(x), cfg.batch_size).argmax(-1))
  rand = models.init_params(model, jax.random.key(s.seed + 1000))
  check = functools.partial(gradcam_lib.randomization_check, model, params, images=x,
                            targets=preds, layer=cfg.layer, methods=tuple(s.methods))
  out = {"randomization": check(rand)}
  out["cascading"] = {
      module: {m: v["spearman_mean"] for m, v in check(p).items()}
      for module, p in gradcam_lib.cascading_params(params, rand, sorted(params, reverse=True))}
  t0 = time.perf_counter()
  attr = gradcam_lib.integrated_gradients(model, params, x, preds, steps=s.ig_steps,
                                          rule=s.ig_rule)
  comp = gradcam_lib.ig_completeness(model, params, x, preds, attr)
  out["integrated_gradients"] = {
      "steps": s.ig_steps, "rule": s.ig_rule, "baseline": "black", "num_images": n,
      "abs_error_mean": float(comp["abs_error"].mean()),
      "abs_error_max": float(comp["abs_error"].max()),
      "rel_error_median": float(np.median(comp["rel_error"])),
      "rel_error_max": float(comp["rel_error"].max()),
      "mean_abs_delta_f": float(np.abs(comp["delta_f"]).mean()),
      "seconds": time.perf_counter() - t0}
  k = min(8, n)
  ig_map = np.abs(np.asarray(attr[:k])).sum(-1)
  xk, pk = x[:k], preds[:k]
  fig = interpret_plots.sanity_figure(np.asarray(split["images"][:k]), {
      "Grad-CAM": gradcam_lib.gradcam(model, params, xk, pk, layer=cfg.layer),
      "Grad-CAM rand": gradcam_lib.gradcam(model, rand, xk, pk, layer=cfg.layer),
      "saliency": gradcam_lib.saliency(model, params, xk, pk),
      "saliency rand": gradcam_lib.saliency(model, rand, xk, pk),
      "|IG|": ig_map / (ig_map.max(axis=(1, 2), keepdims=True) + 1e-12)},
      title=f"{name}: trained vs re-initialized (rows), hard-test images")
  plots.save_figure(fig, fig_dir / f"sanity_{name}.png")
  return out


def _featviz(model, params, cfg, name, fig_dir):
  f = cfg.featviz
  # Every key but the layer list and the seed is a keyword argument of visualize_layer.
  kwargs = {k: v for k, v in f.items() if k not in ("layers", "seed")}
  out = {}
  for i, layer in enumerate(f.layers):
    t0 = time.perf_counter()
    r = featviz.visualize_layer(model, params, layer=layer,
                                key=jax.random.fold_in(jax.random.key(f.seed), i), **kwargs)
    seconds = time.perf_counter() - t0
    out[layer] = {"activation": r["activation"].tolist(), "seconds": seconds,
                  "image_min": float(r["images"].min()), "image_max": float(r["images"].max())}
    plots.save_figure(interpret_plots.channel_grid(
        r["images"], r["activation"], layer=layer,
        title=f"{name} {layer}: activation maximization ({f.steps} steps, {f.param})"),
        fig_dir / f"featviz_{name}_{layer}.png")
    logging.info("featviz %s %s: %.1fs", name, layer, seconds)
  return out


def _selectivity(model, params, stimuli, cfg, name, fig_dir, pool):
  s = cfg.selectivity
  out, full = {}, {p: {} for p in s.pools}
  for layer in s.layers:
    out[layer] = {}
    for pool_name in s.pools:
      r = sel_lib.layer_selectivity(model, params, stimuli, layer=layer, relu=s.relu,
                                    pool=pool_name, threshold=s.threshold, ratio=s.ratio)
      full[pool_name][layer] = r
      out[layer][pool_name] = {
          "fractions": r["fractions"],
          "mean_color_index_live": r["mean_color_index_live"],
          "mean_shape_index_live": r["mean_shape_index_live"],
          "color_index": np.nan_to_num(r["color"], nan=-1).tolist(),
          "shape_index": np.nan_to_num(r["shape"], nan=-1).tolist(),
          "classes": r["classes"].tolist()}
      if r["tables"].ndim == 3:
        plots.save_figure(interpret_plots.cell_tables_figure(
            r["tables"], r["classes"], layer=layer,
            title=f"{name} {layer}: mean activation (pool {pool_name})"),
            fig_dir / f"cells_{name}_{layer}.png")
    tk = sel_lib.top_k(model, params, pool["images"], layer=layer, k=s.topk)
    plots.save_figure(interpret_plots.topk_grid(
        pool["images"], tk["indices"], layer=layer, labels=pool["labels"],
        colors=pool["colors"], title=f"{name} {layer}: top-{s.topk} {s.topk_split} images "
        "(digit/color)"), fig_dir / f"topk_{name}_{layer}.png")
    out[layer]["topk_indices"] = tk["indices"].tolist()
  return out, full


def _paired(a, b, rng, n_boot=2000) -> dict:
  """Mean of a - b over images where both are finite, with a bootstrap 95% interval."""
  ok = np.isfinite(a) & np.isfinite(b)
  d = (a - b)[ok]
  if not len(d):
    return {"num_images": 0}
  boot = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
  return {"mean_diff": float(d.mean()), "ci95": [float(np.quantile(boot, 0.025)),
                                                 float(np.quantile(boot, 0.975))],
          "frac_a_higher": float(np.mean(d > 0)), "num_images": len(d)}


def _workdir_and_replica(value, default_replica: int):
  if isinstance(value, (tuple, list)):
    return str(value[0]), value[1]
  return str(value), default_replica


def interpret_runs(runs, cfg, out_dir) -> dict:
  """Runs every analysis on each run's model; returns (and writes) interpret.json's dict.

  runs: {name: workdir} (replica cfg.replica of each) or {name: (workdir, replica)}, or the
  string 'name1=/path1,name2=/path2'. cfg: a configs/interpret.py config.
  """
  chosen = {name: _workdir_and_replica(v, cfg.replica)
            for name, v in runs_lib.parse_runs(runs).items()}
  workdirs = {name: wd for name, (wd, _) in chosen.items()}
  out_dir = pathlib.Path(out_dir)
  fig_dir = out_dir / "figures"
  loaded = {name: runs_lib.load_run(wd, replica=rep) for name, (wd, rep) in chosen.items()}
  first = next(iter(loaded.values()))[2]
  data_cfg = first.data if cfg.data_from_run else cfg.data
  splits = splits_lib.get_splits(data_cfg)

  cases = case_images(data_cfg, tuple(cfg.cases), cfg.seed)
  grey, labels = splits_lib.load_grey(data_cfg, "test")
  s = cfg.selectivity
  stimuli = sel_lib.stimulus_set(grey, labels, n_per_cell=s.n_per_cell, seed=s.seed,
                                 **splits_lib.coloring_kwargs(data_cfg))["images"]
  pool_split = splits[s.topk_split]
  n_pool = min(s.topk_pool, len(pool_split["labels"]))
  pool = {k: pool_split[k][:n_pool] for k in ("images", "labels", "colors")}

  result = {"runs": workdirs, "layer": cfg.layer, "data": data_cfg.to_dict(),
            "settings": cfg.to_dict(), "models": {}}
  case_maps, case_preds, case_probs, sel_full, entropies = {}, {}, {}, {}, {}
  for name, (model, params, run_cfg) in loaded.items():
    t0 = time.perf_counter()
    r = {"workdir": workdirs[name], "replica": runs_lib.replicas(run_cfg)[chosen[name][1]],
         "model": run_cfg.model.name, "loss": run_cfg.loss.name}
    r["cases"], case_maps[name], case_preds[name], case_probs[name] = _cases(
        model, params, cases, cfg)
    r["spread"], entropies[name] = {}, {}
    for split in SPREAD_SPLITS:
      r["spread"][split], h = _spread(model, params, splits[split], cfg)
      entropies[name].update({(split, t): v for t, v in h.items()})
    r["sanity"] = _sanity(model, params, splits["test_hard"], cfg, name, fig_dir)
    r["selectivity"], sel_full[name] = _selectivity(model, params, stimuli, cfg, name, fig_dir,
                                                    pool)
    r["featviz"] = _featviz(model, params, cfg, name, fig_dir)
    r["seconds"] = time.perf_counter() - t0
    result["models"][name] = r
    logging.info("%s: spread hard %.3f nats, easy %.3f nats (%.0fs)", name,
                 r["spread"]["test_hard"]["pred"]["entropy_nats_mean"],
                 r["spread"]["test_easy"]["pred"]["entropy_nats_mean"], r["seconds"])

  # Paired spread differences (same images): each model minus the first.
  names = list(loaded)
  result["spread_vs_first"] = {
      f"{b}-{names[0]}": {f"{sp}/{t}": _paired(entropies[b][(sp, t)], entropies[names[0]][(sp, t)],
                                             np.random.default_rng(cfg.seed))
                          for (sp, t) in entropies[b]} for b in names[1:]}
  plots.save_figure(interpret_plots.gradcam_cases(
      cases["images"], cases["titles"], case_maps, case_preds, case_probs,
      title=f"Grad-CAM ({cfg.layer}) of the predicted class"), fig_dir / "gradcam_cases.png")
  for pool_name in s.pools:
    plots.save_figure(interpret_plots.selectivity_heatmap(
        {n: v[pool_name] for n, v in sel_full.items()}, layers=tuple(s.layers),
        title=f"Channel selectivity, variance of cell-mean {POOL_DESCRIPTIONS[pool_name]} "
        "(C color, S shape, M mixed, D dead)"), fig_dir / f"selectivity_{pool_name}.png")
  io.write_json(out_dir / "interpret.json", result, indent=2)
  return result
