"""interpret_runs: the interpretability analyses of trained runs, side by side.

For each named run: Grad-CAM of the study's cases, the Grad-CAM activation spread on the hard
and easy test sets, feature visualization of every channel of every conv layer, channel
selectivity (color vs shape) on a controlled stimulus set, top-k activating test images, and
the model-randomization sanity check with Integrated-Gradients completeness.
Writes out_dir/interpret.json and out_dir/figures/*.png.
"""

import functools
import json
import pathlib
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ccmnist import models
from ccmnist.data import coloring
from ccmnist.data import export
from ccmnist.data import palette as palette_lib
from ccmnist.data import splits as splits_lib
from ccmnist.interpret import featviz
from ccmnist.interpret import gradcam as gradcam_lib
from ccmnist.interpret import selectivity as sel_lib
from ccmnist.plots import interpret as plots
from ccmnist.train import loop


def pool_name_desc(pool: str) -> str:
  return {"mean": "spatial-mean activation", "max": "spatial-max activation",
          "map": "activation maps"}[pool]


def default_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """configs/interpret.py's config of a variant (None/'' full, 'quick', 'tiny')."""
  from configs import interpret as interpret_config  # pylint: disable=import-outside-toplevel
  return interpret_config.get_config(variant or None)


def parse_runs(runs) -> dict:
  """{name: workdir or (workdir, replica)} from 'name1=/path1,name2=/path2', a dict or a
  ConfigDict."""
  if isinstance(runs, (dict, ml_collections.ConfigDict)):
    out = dict(runs.items())
  else:
    out = {}
    for item in (s.strip() for s in str(runs).split(",")):
      if not item:
        continue
      if "=" not in item:
        raise ValueError(f"bad run {item!r}: write runs as 'name1=/path1,name2=/path2'.")
      name, path = (x.strip() for x in item.split("=", 1))
      if not name or not path or name in out:
        raise ValueError(f"bad run {item!r}: each run needs a unique name and a workdir.")
      out[name] = path
  if not out:
    raise ValueError("no runs given: set config.runs to 'name1=/path1,name2=/path2'.")
  return out


def _batched(fn, images, targets, batch_size: int) -> np.ndarray:
  """fn(images, targets) over fixed-size batches (last one padded: one compiled shape)."""
  out = []
  for i in range(0, len(images), batch_size):
    x, t = images[i:i + batch_size], targets[i:i + batch_size]
    pad = batch_size - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      t = np.concatenate([t, np.zeros((pad,), t.dtype)])
    out.append(np.asarray(fn(jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.int32)))[
        :batch_size - pad])
  return np.concatenate(out)


@functools.partial(jax.jit, static_argnames=("model",))
def _apply(model, params, images):
  return model.apply({"params": params}, images)


def _logits(model, params, images, batch_size):
  return _batched(lambda x, t: _apply(model, params, x), images,
                  np.zeros(len(images), np.int32), batch_size)


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
  images = coloring.colorize(
      grey[idx], np.asarray(colors, np.int32), rng, mode=data_cfg.coloring,
      palette=splits_lib.palette_of(data_cfg), noise_sigma=data_cfg.noise_sigma,
      bg_range=(data_cfg.bg_low, data_cfg.bg_high))
  titles = [f"{palette_lib.COLOR_NAMES[c]} {d}" for d, c in zip(digits, colors)]
  return {"images": images, "labels": np.asarray(digits), "colors": np.asarray(colors),
          "titles": titles}


def _spread(model, params, split, cfg):
  n = min(cfg.num_eval, len(split["labels"]))
  x, y = split["images"][:n], split["labels"][:n]
  preds = _logits(model, params, x, cfg.batch_size).argmax(-1)
  out = {"num_images": n, "accuracy": float(np.mean(preds == y))}
  for target_name, targets in (("pred", preds), ("label", y)):
    maps = _batched(lambda a, t: gradcam_lib.gradcam(model, params, a, t, layer=cfg.layer),
                    x, targets, cfg.batch_size)
    out[target_name] = gradcam_lib.spread_summary(maps)
    out[target_name]["_entropy"] = gradcam_lib.map_entropy(maps)
  return out


def _sanity(model, params, split, cfg, name, fig_dir):
  s = cfg.sanity
  n = min(s.num_images, len(split["labels"]))
  x = jnp.asarray(split["images"][:n], jnp.float32)
  preds = jnp.asarray(_logits(model, params, np.asarray(x), cfg.batch_size).argmax(-1))
  rand = models.init_params(model, jax.random.key(s.seed + 1000))
  out = {"randomization": gradcam_lib.randomization_check(
      model, params, rand, x, preds, layer=cfg.layer, methods=tuple(s.methods))}
  cascade = {}
  for module, p in gradcam_lib.cascading_params(params, rand, sorted(params, reverse=True)):
    cascade[module] = {m: v["spearman_mean"] for m, v in gradcam_lib.randomization_check(
        model, params, p, x, preds, layer=cfg.layer, methods=tuple(s.methods)).items()}
  out["cascading"] = cascade
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
  fig = plots.sanity_figure(np.asarray(split["images"][:k]), {
      "Grad-CAM": gradcam_lib.gradcam(model, params, x[:k], preds[:k], layer=cfg.layer),
      "Grad-CAM rand": gradcam_lib.gradcam(model, rand, x[:k], preds[:k], layer=cfg.layer),
      "saliency": gradcam_lib.saliency(model, params, x[:k], preds[:k]),
      "saliency rand": gradcam_lib.saliency(model, rand, x[:k], preds[:k]),
      "|IG|": ig_map / (ig_map.max(axis=(1, 2), keepdims=True) + 1e-12)},
      title=f"{name}: trained vs re-initialized (rows), hard-test images")
  export.save_figure(fig, fig_dir / f"sanity_{name}.png")
  return out


def _featviz(model, params, cfg, name, fig_dir):
  f = cfg.featviz
  out = {}
  for i, layer in enumerate(f.layers):
    t0 = time.perf_counter()
    r = featviz.visualize_layer(
        model, params, layer=layer, key=jax.random.fold_in(jax.random.key(f.seed), i),
        steps=f.steps, lr=f.lr, l2=f.l2, init_std=f.init_std, jitter=f.jitter,
        scales=tuple(f.scales), param=f.param)
    seconds = time.perf_counter() - t0
    out[layer] = {"activation": r["activation"].tolist(), "seconds": seconds,
                  "image_min": float(r["images"].min()), "image_max": float(r["images"].max())}
    export.save_figure(plots.channel_grid(
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
        export.save_figure(plots.cell_tables_figure(
            r["tables"], r["classes"], layer=layer,
            title=f"{name} {layer}: mean activation (pool {pool_name})"),
            fig_dir / f"cells_{name}_{layer}.png")
    tk = sel_lib.top_k(model, params, pool["images"], layer=layer, k=s.topk)
    export.save_figure(plots.topk_grid(
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


def interpret_runs(runs: dict, cfg, out_dir) -> dict:
  """Runs every analysis on each run's model; returns (and writes) interpret.json's dict.

  runs: {name: workdir} (replica cfg.replica of each) or {name: (workdir, replica)}, or the
  string 'name1=/path1,name2=/path2'. cfg: configs/interpret.py's config (`default_config`).
  """
  runs = parse_runs(runs)
  replicas = {n: (v[1] if isinstance(v, (tuple, list)) else cfg.replica) for n, v in runs.items()}
  runs = {n: str(v[0] if isinstance(v, (tuple, list)) else v) for n, v in runs.items()}
  out_dir = pathlib.Path(out_dir)
  fig_dir = out_dir / "figures"
  loaded = {name: loop.load_run(wd, replica=replicas[name]) for name, wd in runs.items()}
  first = next(iter(loaded.values()))[2]
  data_cfg = first.data if cfg.data_from_run else cfg.data
  splits = splits_lib.get_splits(data_cfg)

  cases = case_images(data_cfg, tuple(cfg.cases), cfg.seed)
  grey, labels = splits_lib.load_grey(data_cfg, "test")
  s = cfg.selectivity
  stimuli = sel_lib.stimulus_set(
      grey, labels, n_per_cell=s.n_per_cell, seed=s.seed, mode=data_cfg.coloring,
      palette=splits_lib.palette_of(data_cfg), noise_sigma=data_cfg.noise_sigma,
      bg_range=(data_cfg.bg_low, data_cfg.bg_high))["images"]
  pool_split = splits[s.topk_split]
  n_pool = min(s.topk_pool, len(pool_split["labels"]))
  pool = {k: pool_split[k][:n_pool] for k in ("images", "labels", "colors")}

  result = {"runs": runs, "layer": cfg.layer, "data": data_cfg.to_dict(),
            "settings": cfg.to_dict(), "models": {}}
  case_maps, case_preds, case_probs, sel_full, entropies = {}, {}, {}, {}, {}
  for name, (model, params, run_cfg) in loaded.items():
    t0 = time.perf_counter()
    rep = loop.replicas(run_cfg)[replicas[name]]
    r = {"workdir": runs[name], "replica": rep, "model": run_cfg.model.name,
         "loss": run_cfg.loss.name}
    logits = _logits(model, params, cases["images"], len(cases["images"]))
    probs = np.asarray(jax.nn.softmax(logits))
    case_preds[name] = logits.argmax(-1)
    case_probs[name] = probs[np.arange(len(probs)), case_preds[name]]
    case_maps[name] = np.asarray(gradcam_lib.gradcam(
        model, params, cases["images"], case_preds[name], layer=cfg.layer))
    r["cases"] = [{"case": t, "pred": int(p), "prob": float(q),
                   "entropy_nats": float(h)} for t, p, q, h in zip(
                       cases["titles"], case_preds[name], case_probs[name],
                       gradcam_lib.map_entropy(case_maps[name]))]
    r["spread"] = {split: _spread(model, params, splits[split], cfg)
                   for split in ("test_hard", "test_easy")}
    entropies[name] = {(sp, t): r["spread"][sp][t].pop("_entropy")
                       for sp in r["spread"] for t in ("pred", "label")}
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
  export.save_figure(plots.gradcam_cases(
      cases["images"], cases["titles"], case_maps, case_preds, case_probs,
      title=f"Grad-CAM ({cfg.layer}) of the predicted class"), fig_dir / "gradcam_cases.png")
  for pool_name in s.pools:
    export.save_figure(plots.selectivity_heatmap(
        {n: v[pool_name] for n, v in sel_full.items()}, layers=tuple(s.layers),
        title=f"Channel selectivity, variance of cell-mean {pool_name_desc(pool_name)} "
        "(C color, S shape, M mixed, D dead)"), fig_dir / f"selectivity_{pool_name}.png")
  loop.atomic_write_text(out_dir / "interpret.json", json.dumps(result, indent=2, default=str))
  return result
