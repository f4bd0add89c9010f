"""interpret_runs: the interpretability analyses of trained runs, side by side.

For each named run, on test images colored as its training images were, for every seed's
replica: Grad-CAM of the study's cases, the Grad-CAM activation spread on the hard and easy test
sets, the representation measures beside their null (linear probes, counterfactual invariance,
causal patching: interpret/representation.py). For the first seed's replica alone (figures, and
checks of the methods rather than of the models): the model-randomization sanity check with
Integrated-Gradients completeness, top-k activating test images and feature visualization of
every channel of every conv layer, the paired spread differences between models.
Writes out_dir/interpret.json (each model's entry is its first seed's, with every seed's measures
in its 'seeds' list) and out_dir/figures/*.png (the first seed's, so titled).
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
from ccmnist import plots
from ccmnist.data import coloring
from ccmnist.data import palette as palette_lib
from ccmnist.data import splits as splits_lib
from ccmnist.interpret import featviz
from ccmnist.interpret import gradcam as gradcam_lib
from ccmnist.interpret import representation as rep_lib
from ccmnist.interpret import topk as topk_lib
from ccmnist.plots import interpret as interpret_plots
from ccmnist.train import runs as runs_lib
from ccmnist.util import batches
from ccmnist.util import io

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


def _sanity(model, params, split, cfg, name, fig_dir, seed):
  s = cfg.sanity
  n = min(s.num_images, len(split["labels"]))
  x = jnp.asarray(split["images"][:n], jnp.float32)
  preds = jnp.asarray(_logits(model, params, np.asarray(x), cfg.batch_size).argmax(-1))
  rand = models.init_params(model, jax.random.key(s.seed + 1000), splits_lib.image_shape(split))
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
      title=f"{name} ({seed}): trained vs re-initialized (rows), hard-test images")
  plots.save_figure(fig, fig_dir / f"sanity_{name}.png")
  return out


def _featviz(model, params, cfg, name, fig_dir, image_shape, seed):
  f = cfg.featviz
  # Every key but the layer list and the seed is a keyword argument of visualize_layer.
  kwargs = {k: v for k, v in f.items() if k not in ("layers", "seed")}
  out = {}
  for i, layer in enumerate(f.layers):
    t0 = time.perf_counter()
    r = featviz.visualize_layer(model, params, layer=layer, image_shape=image_shape,
                                key=jax.random.fold_in(jax.random.key(f.seed), i), **kwargs)
    seconds = time.perf_counter() - t0
    out[layer] = {"activation": r["activation"].tolist(), "seconds": seconds,
                  "image_min": float(r["images"].min()), "image_max": float(r["images"].max())}
    plots.save_figure(interpret_plots.channel_grid(
        r["images"], r["activation"], layer=layer,
        title=f"{name} {layer} ({seed}): activation maximization ({f.steps} steps, "
              f"{f.param})"),
        fig_dir / f"featviz_{name}_{layer}.png")
    logging.info("featviz %s %s: %.1fs", name, layer, seconds)
  return out


def _topk(model, params, pool, cfg, name, fig_dir, seed):
  """The top-k activating images of every channel of each layer: {layer: indices}."""
  t = cfg.topk
  out = {}
  for layer in t.layers:
    tk = topk_lib.top_k(model, params, pool["images"], layer=layer, k=t.k)
    plots.save_figure(interpret_plots.topk_grid(
        pool["images"], tk["indices"], layer=layer, labels=pool["labels"],
        colors=pool["colors"], title=f"{name} {layer} ({seed}): top-{t.k} {t.split} images "
        "(digit/color)"), fig_dir / f"topk_{name}_{layer}.png")
    out[layer] = tk["indices"].tolist()
  return out


def _stimuli(data_cfg, rc, cache: dict) -> tuple:
  """(key, stimuli): the counterfactual stimuli of a data config, cached by its test digits
  and coloring settings. A model trained on grey digits is measured on colored ones: grey
  stimuli would make x_cf equal x, and every channel blind to color by construction."""
  data_cfg = ml_collections.ConfigDict({**data_cfg.to_dict(), "grayscale": False})
  kwargs = splits_lib.coloring_kwargs(data_cfg)
  spec = splits_lib.spec(data_cfg)
  key = json.dumps({"source": data_cfg.source, "seed": data_cfg.seed,
                    "shape": [spec.image_shape, spec.num_classes],
                    **{k: np.asarray(v).tolist() for k, v in kwargs.items()}}, sort_keys=True)
  if key not in cache:
    grey, labels = splits_lib.load_grey(data_cfg, "test")
    cache[key] = (key, rep_lib.counterfactual_stimuli(
        grey, labels, num=rc.num_images, num_classes=spec.num_classes, seed=rc.seed, **kwargs))
  return cache[key]


def _representation(model, params, stim, stim_key, rc, null_cache: dict, spec) -> dict:
  """Representation measures of one model beside its null (interpret/representation.py): the
  random inits (computed once per architecture and stimulus set) and its hue-blind copy."""
  kw = dict(layers=tuple(rc.layers), num_causal=rc.num_causal, alpha=rc.alpha, grid=rc.grid,
            folds=rep_lib.folds_of(len(stim["labels"]), rc.folds, rc.seed),
            batch_size=rc.batch_size, num_classes=spec.num_classes, num_colors=spec.num_colors)
  null_key = (model, stim_key)
  if null_key not in null_cache:
    null_cache[null_key] = [
        rep_lib.network_measures(model, p, stim, **kw)
        for p in rep_lib.random_params(model, inits=rc.null_inits, seed=rc.null_seed,
                                       image_shape=spec.image_shape)]
  out = rep_lib.summarize(rep_lib.network_measures(model, params, stim, **kw),
                          null_cache[null_key],
                          rep_lib.network_measures(model, rep_lib.hue_blind(params), stim, **kw),
                          layers=tuple(rc.layers), quantile=rc.quantile,
                          causal_quantile=rc.causal_quantile)
  out["stimuli"] = {"num_images": len(stim["labels"]), "num_causal": min(rc.num_causal,
                                                                          len(stim["labels"])),
                    "intensity_gap_mean": stim["intensity_gap_mean"],
                    "null_inits": rc.null_inits}
  return out


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


def _workdir_and_replicas(value, default_replica: int) -> tuple:
  """(workdir, [replicas]) of a run given as a workdir (then default_replica), as (workdir,
  replica), or as (workdir, [the replica of each seed])."""
  workdir, replica = (value[0], value[1]) if isinstance(value, (tuple, list)) else (
      value, default_replica)
  replicas = list(replica) if isinstance(replica, (tuple, list)) else [replica]
  if not replicas:
    raise ValueError(f"Run {workdir} names no replica; give one, or one per seed.")
  return str(workdir), [int(r) for r in replicas]


def _load(workdir, replicas: list) -> tuple:
  """(model, [params of each replica], config): the checkpoint restored once."""
  model, stacked, config = runs_lib.load_run(workdir, replica=None)
  num = len(runs_lib.replicas(config))
  if not all(0 <= r < num for r in replicas):
    raise ValueError(f"replicas {replicas} of {workdir} out of range: the run has {num}.")
  return model, [jax.tree_util.tree_map(lambda x, r=r: x[r], stacked) for r in replicas], config


def _seed_measures(model, params, cases, splits, stim, cfg, null_cache, spec) -> tuple:
  """(entry, extras) of one replica: the measures whose numbers the report uses (Grad-CAM of
  the cases, the spread, the representation beside its null), and the arrays the first seed's
  figures and paired differences draw on."""
  entry, extra = {}, {"entropies": {}}
  entry["cases"], extra["maps"], extra["preds"], extra["probs"] = _cases(model, params, cases,
                                                                         cfg)
  entry["spread"] = {}
  for split in SPREAD_SPLITS:
    entry["spread"][split], h = _spread(model, params, splits[split], cfg)
    extra["entropies"].update({(split, t): v for t, v in h.items()})
  t1 = time.perf_counter()
  stim_key, stim_ = stim
  entry["representation"] = _representation(model, params, stim_, stim_key, cfg.representation,
                                            null_cache, spec)
  entry["representation_seconds"] = time.perf_counter() - t1
  return entry, extra


def interpret_runs(runs, cfg, out_dir) -> dict:
  """Runs every analysis on each run's model; returns (and writes) interpret.json's dict.

  runs: {name: workdir} (replica cfg.replica of each), {name: (workdir, replica)} or
  {name: (workdir, [the replica of each seed])}, or the string 'name1=/path1,name2=/path2'.
  cfg: a configs/interpret.py config.
  """
  chosen = {name: _workdir_and_replicas(v, cfg.replica)
            for name, v in runs_lib.parse_runs(runs).items()}
  workdirs = {name: wd for name, (wd, _) in chosen.items()}
  out_dir = pathlib.Path(out_dir)
  fig_dir = out_dir / "figures"
  loaded = {name: _load(wd, reps) for name, (wd, reps) in chosen.items()}
  first = next(iter(loaded.values()))[2]
  data_cfgs = {name: run_cfg.data if cfg.data_from_run else cfg.data
               for name, (_, _, run_cfg) in loaded.items()}
  # Each model is analysed on test images colored as its training images were; the Grad-CAM
  # cases are the same digits and colors for every model.
  data_cfg = first.data if cfg.data_from_run else cfg.data
  split_cache, stim_cache, null_cache = {}, {}, {}

  def splits_of(name):
    key = json.dumps(data_cfgs[name].to_dict(), sort_keys=True, default=str)
    if key not in split_cache:
      split_cache[key] = splits_lib.get_splits(data_cfgs[name])
    return split_cache[key]

  result = {"runs": workdirs, "layer": cfg.layer, "data": data_cfg.to_dict(),
            "settings": cfg.to_dict(), "models": {}}
  case_maps, case_preds, case_probs, rep_all, entropies = {}, {}, {}, {}, {}
  seed_label = {}
  for name, (model, params, run_cfg) in loaded.items():
    t0 = time.perf_counter()
    splits = splits_of(name)
    cases = case_images(data_cfgs[name], tuple(cfg.cases), cfg.seed)
    stim = _stimuli(data_cfgs[name], cfg.representation, stim_cache)
    spec = splits_lib.spec(data_cfgs[name])
    seeds = []
    for s, p in enumerate(params):
      entry, extra = _seed_measures(model, p, cases, splits, stim, cfg, null_cache, spec)
      seeds.append({"replica": runs_lib.replicas(run_cfg)[chosen[name][1][s]], **entry})
      if s == 0:
        case_maps[name], case_preds[name], case_probs[name] = (
            extra["maps"], extra["preds"], extra["probs"])
        entropies[name] = extra["entropies"]
      logging.info("%s seed %d: spread hard %.3f nats, easy %.3f nats; representation %.0fs",
                   name, s, entry["spread"]["test_hard"]["pred"]["entropy_nats_mean"],
                   entry["spread"]["test_easy"]["pred"]["entropy_nats_mean"],
                   entry["representation_seconds"])
    seed_label[name] = f"seed {seeds[0]['replica']['seed']}"
    r = {"workdir": workdirs[name], "replica": seeds[0]["replica"],
         "model": run_cfg.model.name, "loss": run_cfg.loss.name,
         "data": {k: data_cfgs[name][k] for k in ("noise_sigma", "coloring", "bg_low",
                                                  "bg_high")},
         **{k: v for k, v in seeds[0].items() if k != "replica"}}
    rep_all[name] = r["representation"]
    r["sanity"] = _sanity(model, params[0], splits["test_hard"], cfg, name, fig_dir,
                          seed_label[name])
    pool_split = splits[cfg.topk.split]
    pool = {k: pool_split[k][:min(cfg.topk.pool, len(pool_split["labels"]))]
            for k in ("images", "labels", "colors")}
    r["topk"] = _topk(model, params[0], pool, cfg, name, fig_dir, seed_label[name])
    r["featviz"] = _featviz(model, params[0], cfg, name, fig_dir,
                            splits_lib.image_shape(splits["test_hard"]), seed_label[name])
    r["seeds"] = seeds
    r["seconds"] = time.perf_counter() - t0
    result["models"][name] = r
    logging.info("%s: %d seed(s) in %.0fs", name, len(seeds), r["seconds"])

  result["seeds"] = sorted({e["replica"]["seed"] for m in result["models"].values()
                            for e in m["seeds"]})
  # Paired spread differences (same images): each model minus the first.
  names = list(loaded)
  result["spread_vs_first"] = {
      f"{b}-{names[0]}": {f"{sp}/{t}": _paired(entropies[b][(sp, t)], entropies[names[0]][(sp, t)],
                                             np.random.default_rng(cfg.seed))
                          for (sp, t) in entropies[b]} for b in names[1:]}
  # The figures show each model's first seed; say which.
  seed = (next(iter(seed_label.values())) if len(set(seed_label.values())) == 1
          else "each model's first seed")
  cases = case_images(data_cfg, tuple(cfg.cases), cfg.seed)
  plots.save_figure(interpret_plots.gradcam_cases(
      cases["images"], cases["titles"], case_maps, case_preds, case_probs,
      title=f"Grad-CAM ({cfg.layer}) of the predicted class, {seed}"),
      fig_dir / "gradcam_cases.png")
  layers = tuple(cfg.representation.layers)
  plots.save_figure(interpret_plots.representation_summary(
      rep_all, layers=layers,
      title=f"Representation measures per layer (bars), each beside its null; {seed}"),
      fig_dir / "representation.png")
  plots.save_figure(interpret_plots.invariance_channels(
      rep_all, layers=layers,
      title="Per-channel counterfactual invariance E|h(x)-h(x_cf)|^2 / E|h(x)-h(x')|^2; "
            f"grey band: the random inits' 2.5-97.5% range; {seed}"),
      fig_dir / "invariance_channels.png")
  io.write_json(out_dir / "interpret.json", result, indent=2)
  return result
