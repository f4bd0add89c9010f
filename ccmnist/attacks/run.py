"""attack_runs(runs, cfg, out_dir): the adversarial analysis of trained runs, end to end.

For every run: an epsilon sweep (one program per batch), per-example minimal epsilon
(bisection), the study's 7 -> 3 example; across runs: the transfer matrix; on the first run:
the cost of the sweep program relative to one epsilon. Writes out_dir/attack.json,
out_dir/attack_arrays.npz and out_dir/figures/*.png.
"""

import json
import math
import pathlib

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ccmnist.attacks import pgd as pgd_lib
from ccmnist.attacks import sweep
from ccmnist.data import export
from ccmnist.data import splits as splits_lib
from ccmnist.plots import attacks as attack_plots
from ccmnist.train import loop

RESULTS_VERSION = 1


def default_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """configs/attack.py's config of a variant (None/'' full, 'quick', 'tiny')."""
  from configs import attack as attack_config  # pylint: disable=import-outside-toplevel
  return attack_config.get_config(variant or None)


def parse_runs(runs) -> dict:
  """{name: workdir or (workdir, replica)} from 'name=workdir,name=workdir', a dict or a
  ConfigDict (order kept)."""
  if isinstance(runs, (dict, ml_collections.ConfigDict)):
    out = dict(runs.items())
  else:
    out = {}
    for item in filter(None, (s.strip() for s in str(runs).split(","))):
      name, sep, workdir = (x.strip() for x in item.partition("="))
      if not sep or not name or not workdir:
        raise ValueError(f"Bad run {item!r} in config.runs; write name=workdir,name=workdir.")
      if name in out:
        raise ValueError(f"Run name {name!r} appears twice in config.runs.")
      out[name] = workdir
  if not out:
    raise ValueError("config.runs is empty; pass --config.runs=name=workdir,name=workdir.")
  return out


def _workdir_replica(value, cfg):
  """A run given as a workdir (cfg.replica) or as (workdir, replica)."""
  if isinstance(value, (tuple, list)):
    workdir, replica = value
    return str(workdir), int(replica)
  return str(value), int(cfg.replica)


def _finite_or_none(x):
  """JSON has no inf/nan: non-finite floats become null (documented in attack.json)."""
  if isinstance(x, dict):
    return {k: _finite_or_none(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_finite_or_none(v) for v in x]
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def _settings(cfg) -> dict:
  p = cfg.pgd
  for name, allowed in (("norm", pgd_lib.NORMS), ("loss", pgd_lib.LOSSES)):
    if p[name] not in allowed:
      raise ValueError(f"config.pgd.{name}={p[name]!r}; use one of {allowed}.")
  if cfg.success.criterion not in sweep.CRITERIA:
    raise ValueError(f"config.success.criterion={cfg.success.criterion!r}; use one of "
                     f"{sweep.CRITERIA}.")
  if cfg.batch_size < 1 or p.steps < 0 or p.restarts < 1 or p.eps < 0:
    raise ValueError("config.batch_size >= 1, pgd.steps >= 0, pgd.restarts >= 1, pgd.eps >= 0.")
  return dict(steps=int(p.steps), norm=p.norm, targeted=bool(p.targeted),
              random_start=bool(p.random_start), loss=p.loss, restarts=int(p.restarts))


def _step_for(cfg, eps):
  eps = np.asarray(eps, np.float32)
  if cfg.pgd.step_size_rel > 0:
    return (cfg.pgd.step_size_rel * eps).astype(np.float32)
  return np.full_like(eps, cfg.pgd.step_size)


def _load(workdir, replica: int, cfg):
  """(model, params, config) of a run, the model rebuilt with cfg.conv_impl when set."""
  model, params, config = loop.load_run(workdir, replica=replica)
  if cfg.conv_impl and getattr(model, "conv_impl", cfg.conv_impl) != cfg.conv_impl:
    model = model.clone(conv_impl=cfg.conv_impl)
  return model, params, config


def _attack_data(cfg, loaded: dict):
  """The split to attack, from the data config of cfg.data_run (default: the first run)."""
  data_run = cfg.data_run or next(iter(loaded))
  if data_run not in loaded:
    raise ValueError(f"config.data_run={data_run!r} is not one of the runs {list(loaded)}.")
  data_cfg = loaded[data_run][2].data
  fields = [f for f in splits_lib.KEY_FIELDS if f not in ("train_size", "val_size",
                                                          "val_unbiased_size")]
  for name, (_, _, config) in loaded.items():
    diff = [f for f in fields if config.data.get(f) != data_cfg.get(f)]
    if diff:
      logging.warning("Run %s was trained on other data settings than %s (%s); attacking "
                      "%s's %s split.", name, data_run, diff, data_run, cfg.split)
  splits = splits_lib.get_splits(data_cfg)
  if cfg.split not in splits:
    raise ValueError(f"config.split={cfg.split!r}; the run's data has {sorted(splits)}.")
  return splits[cfg.split], data_run


def attack_runs(runs: dict, cfg, out_dir) -> dict:
  """The adversarial analysis of `runs`; returns attack.json's dict.

  runs: {name: workdir or (workdir, replica)} (or 'name=workdir,...'); a bare workdir uses
  cfg.replica. cfg: a configs/attack.py config (see default_config; its `runs` field is
  ignored here). A finished analysis of the same runs and config is read back, not recomputed;
  a finished model's stage (out_dir/stages/NAME.*) is reused when its run and settings match.
  """
  out_dir = pathlib.Path(out_dir)
  runs = {name: _workdir_replica(v, cfg) for name, v in parse_runs(runs).items()}
  static = _settings(cfg)
  identity = {"version": RESULTS_VERSION, "runs": {k: list(v) for k, v in runs.items()},
              "config": json.loads(json.dumps(cfg.to_dict(), default=str))}
  identity["config"].pop("runs", None)
  results_path = out_dir / "attack.json"
  if results_path.exists():
    old = json.loads(results_path.read_text())
    if {k: old.get(k) for k in identity} == identity:
      logging.info("%s is up to date; not recomputing.", results_path)
      return old
    logging.info("%s holds another analysis; recomputing.", results_path)

  loaded = {name: _load(wd, replica, cfg) for name, (wd, replica) in runs.items()}
  split, data_run = _attack_data(cfg, loaded)
  tc = cfg.targets
  idx, targets = sweep.select_examples(
      split["labels"], split["colors"], rule=tc.rule, target=tc.target, source=tc.source,
      shift=tc.shift, exclude_target_color=tc.exclude_target_color, num=tc.num_images,
      seed=cfg.seed)
  images = split["images"][idx].astype(np.float32)
  labels = split["labels"][idx].astype(np.int32)
  attack_labels = targets if static["targeted"] else labels
  logging.info("Attacking %d %s images of run %s's data (rule %s).", len(idx), cfg.split,
               data_run, tc.rule)

  eps_list = sorted({float(e) for e in cfg.sweep.epsilons} | {float(cfg.pgd.eps)})
  k_study = eps_list.index(float(cfg.pgd.eps))
  eps_E = jnp.asarray(eps_list, jnp.float32)
  step_E = jnp.asarray(_step_for(cfg, eps_list))
  key = jax.random.key(cfg.seed)
  crit = cfg.success.criterion
  ev_kw = {"targeted": static["targeted"], "threshold": float(cfg.success.threshold)}

  per_model, advs, arrays = {}, {}, {}
  for name, (model, params, _) in loaded.items():
    stage = out_dir / "stages" / name
    # A model's stage depends on its run, the attacked data and the settings, not the others.
    stage_id = {"version": RESULTS_VERSION, "run": list(runs[name]),
                "data_run": list(runs[data_run]), "config": identity["config"]}
    summary, arr = _load_stage(stage, stage_id)
    if summary is None:
      summary, arr = _attack_model(cfg, model, params, images, labels, attack_labels, static,
                                   key, eps_list, k_study)
      _save_stage(stage, stage_id, summary, arr)
    else:
      logging.info("%s: read the finished sweep and minimal epsilon from %s.", name, stage)
    per_model[name] = summary
    advs[name] = arr.pop("adv")
    arrays.update({f"{name}/{k}": v for k, v in arr.items()})
    logging.info("%s sweep (%s): %s", name, crit, dict(zip(eps_list, np.round(
        summary["sweep"]["success_" + crit], 3).tolist())))
    logging.info("%s minimal eps: %s", name, summary["min_eps"])

  models_params = {n: (m_, p_) for n, (m_, p_, _) in loaded.items()}
  transfer = sweep.transfer_matrix(models_params, advs, attack_labels, **ev_kw)

  example = _study_example(cfg, split, loaded, static, key)
  timing = _timing(cfg, loaded, images, attack_labels, static, key, eps_E, step_E)

  results = {
      **identity,
      "note": "null = not finite (no success within eps_max). Success 'prob': target "
              "probability > threshold; 'argmax': predicted class == target.",
      "data_run": data_run, "split": cfg.split, "num_images": len(idx),
      "target_rule": tc.to_dict(), "study_eps": float(cfg.pgd.eps), "criterion": crit,
      "models": per_model, "transfer": transfer, "example": example["summary"],
      "timing": timing,
  }
  results = _finite_or_none(results)
  _write_figures(out_dir, cfg, results, arrays, example)
  np_path = out_dir / "attack_arrays.npz"
  out_dir.mkdir(parents=True, exist_ok=True)
  tmp = np_path.with_name(np_path.name + ".tmp.npz")
  np.savez(tmp, indices=idx, targets=targets, **arrays)
  tmp.replace(np_path)
  loop.atomic_write_text(results_path, json.dumps(results, indent=2))
  return results


def _attack_model(cfg, model, params, images, labels, attack_labels, static, key, eps_list,
                  k_study):
  """Sweep (one program per batch), clean rates, minimal epsilon and anatomy of one model."""
  thr, crit, bs = float(cfg.success.threshold), cfg.success.criterion, int(cfg.batch_size)
  ev_kw = {"targeted": static["targeted"], "threshold": thr}
  eps_E = jnp.asarray(eps_list, jnp.float32)
  step_E = jnp.asarray(_step_for(cfg, eps_list))

  def sweep_chunk(c, x, t):
    adv = sweep._sweep_jit(params, jnp.asarray(x), jnp.asarray(t), eps_E, step_E,  # pylint: disable=protected-access
                           jax.random.fold_in(key, c), model=model,
                           eps_batching=cfg.sweep.batching, **static)
    ev = sweep.evaluate(model, params, adv, t, **ev_kw)
    return {"prob": ev["prob"], "argmax": ev["argmax"], "p": ev["p_label"],
            "adv": adv[k_study][None]}

  out = sweep.chunked(sweep_chunk, [images, attack_labels], batch_size=bs, axis=1)
  clean = sweep.evaluate(model, params, images, attack_labels, **ev_kw)
  clean_acc = sweep.evaluate(model, params, images, labels, targeted=True, threshold=thr)
  summary = {"sweep": {
      "epsilons": eps_list, "success_prob": out["prob"].mean(1).tolist(),
      "success_argmax": out["argmax"].mean(1).tolist(),
      "mean_p_target": out["p"].mean(1).tolist(),
      "clean_success_prob": float(np.mean(clean["prob"])),
      "clean_success_argmax": float(np.mean(clean["argmax"])),
      "clean_accuracy": float(np.mean(clean_acc["argmax"]))}}

  m = min(cfg.min_eps.num_images, len(images))

  def min_chunk(c, x, t):
    return sweep._min_eps_jit(  # pylint: disable=protected-access
        params, jnp.asarray(x), jnp.asarray(t), jnp.float32(cfg.min_eps.eps_max),
        jnp.float32(cfg.pgd.step_size), jnp.float32(cfg.pgd.step_size_rel),
        jax.random.fold_in(key, 10_000 + c), model=model, iters=int(cfg.min_eps.iters),
        criterion=crit, threshold=thr, **static)

  mins = sweep.chunked(min_chunk, [images[:m], attack_labels[:m]], batch_size=min(bs, m))
  summary["min_eps"] = sweep.summarize_min_eps(mins["min_eps"], eps_max=cfg.min_eps.eps_max)
  adv = out["adv"][0]
  anat = sweep.perturbation_anatomy(adv - images, sweep.stroke_mask(images))
  arrays = {"adv": adv.astype(np.float32), "min_eps": mins["min_eps"],
            "mean_abs_delta": anat.pop("mean_abs_map_HWC")}
  summary["anatomy"] = anat
  return summary, arrays


def _load_stage(stage: pathlib.Path, identity: dict):
  """(summary, arrays) of a model finished by an earlier call with the same identity."""
  meta, data = stage.with_suffix(".json"), stage.with_suffix(".npz")
  if not (meta.exists() and data.exists()):
    return None, None
  saved = json.loads(meta.read_text())
  if saved.get("identity") != identity:
    return None, None
  with np.load(data) as f:
    return saved["summary"], {k: f[k] for k in f.files}


def _save_stage(stage: pathlib.Path, identity: dict, summary: dict, arrays: dict) -> None:
  stage.parent.mkdir(parents=True, exist_ok=True)
  tmp = stage.with_name(stage.name + ".tmp.npz")
  np.savez(tmp, **arrays)
  tmp.replace(stage.with_suffix(".npz"))
  loop.atomic_write_text(stage.with_suffix(".json"), json.dumps(
      _finite_or_none({"identity": identity, "summary": summary}), indent=1))


def _study_example(cfg, split, loaded, static, key) -> dict:
  """The study's single example (source -> target) on every model, at the study's epsilon.

  Attacked as a batch of one (its own compiled programs, shared by the models).
  """
  ex = cfg.example
  idx, targets = sweep.select_examples(
      split["labels"], split["colors"], rule="pair", source=ex.source, target=ex.target,
      exclude_target_color=cfg.targets.exclude_target_color, num=1, seed=cfg.seed)
  x = split["images"][idx].astype(np.float32)
  t = targets if static["targeted"] else split["labels"][idx].astype(np.int32)
  thr = float(cfg.success.threshold)
  step = float(_step_for(cfg, cfg.pgd.eps))
  summary = {"index": int(idx[0]), "label": int(split["labels"][idx[0]]),
             "color": int(split["colors"][idx[0]]), "target": int(targets[0]),
             "eps": float(cfg.pgd.eps), "models": {}}
  advs = {}
  pgd_kw = {k: v for k, v in static.items() if k != "steps"}
  for name, (model, params, _) in loaded.items():
    adv = np.asarray(pgd_lib.pgd(model, params, x, t, eps=cfg.pgd.eps, step_size=step,
                                 steps=static["steps"], key=jax.random.fold_in(key, 20_000),
                                 **pgd_kw))
    mins = sweep.minimal_eps(
        model, params, x, t, eps_max=cfg.min_eps.eps_max, iters=cfg.min_eps.iters,
        step_size=cfg.pgd.step_size, step_rel=cfg.pgd.step_size_rel, steps=static["steps"],
        criterion=cfg.success.criterion, threshold=thr, key=jax.random.fold_in(key, 30_000),
        **pgd_kw)
    ev_clean = sweep.evaluate(model, params, x, t, targeted=static["targeted"], threshold=thr)
    ev = sweep.evaluate(model, params, adv, t, targeted=static["targeted"], threshold=thr)
    pred = lambda im, model=model, params=params: int(
        np.argmax(model.apply({"params": params}, jnp.asarray(im))[0]))
    d = (adv - x)[0].astype(np.float64)
    chroma, total = sweep.chromatic_energy(d[None])
    advs[name] = adv[0]
    summary["models"][name] = {
        "clean_p_target": float(ev_clean["p_label"][0]), "clean_pred": pred(x),
        "p_target": float(ev["p_label"][0]), "pred": pred(adv),
        "success_prob": bool(ev["prob"][0]), "success_argmax": bool(ev["argmax"][0]),
        "min_eps": float(mins["min_eps"][0]), "l2": float(np.sqrt(total[0])),
        "linf": float(np.abs(d).max()),
        "chromatic_share": float(chroma[0] / max(total[0], 1e-30))}
    logging.info("Example %d -> %d on %s: %s", summary["label"], summary["target"], name,
                 summary["models"][name])
  return {"summary": summary, "original": x[0], "advs": advs}


def _timing(cfg, loaded, images, attack_labels, static, key, eps_E, step_E) -> dict:
  """Median wall time of the E-epsilon sweep program vs the one-epsilon program (first run)."""
  if not cfg.timing.enabled:
    return {}
  name, (model, params, _) = next(iter(loaded.items()))
  b = int(cfg.timing.batch_size)
  x = jnp.asarray(sweep.pad_batch(images[:b], b))
  t = jnp.asarray(sweep.pad_batch(attack_labels[:b], b))
  k = list(np.asarray(eps_E)).index(float(cfg.pgd.eps))
  eps_b, step_b = jnp.full((b,), eps_E[k]), jnp.full((b,), step_E[k])
  fns = {
      "single": lambda: pgd_lib._pgd_jit(params, x, t, eps_b, step_b, key, model=model,  # pylint: disable=protected-access
                                         **static),
      "sweep": lambda: sweep._sweep_jit(params, x, t, eps_E, step_E, key, model=model,  # pylint: disable=protected-access
                                        eps_batching="vmap", **static),
      "sweep_map": lambda: sweep._sweep_jit(params, x, t, eps_E, step_E, key, model=model,  # pylint: disable=protected-access
                                            eps_batching="map", **static),
  }
  out = sweep.time_programs(fns, repeats=int(cfg.timing.repeats))
  e = int(eps_E.shape[0])
  out.update({
      "model": name, "batch_size": b, "num_epsilons": e, "backend": jax.default_backend(),
      "sweep_over_single": out["sweep_s"] / out["single_s"],
      "sweep_map_over_single": out["sweep_map_s"] / out["single_s"],
      "sweep_over_single_per_epsilon": out["sweep_s"] / out["single_s"] / e,
      "single_img_per_s": b / out["single_s"],
      "sweep_attacks_per_s": e * b / out["sweep_s"],
  })
  logging.info("Timing: single %.3fs (%.0f img/s), %d-eps sweep vmap %.3fs (x%.2f), map %.3fs "
               "(x%.2f)", out["single_s"], out["single_img_per_s"], e, out["sweep_s"],
               out["sweep_over_single"], out["sweep_map_s"], out["sweep_map_over_single"])
  return out


def _write_figures(out_dir, cfg, results, arrays, example) -> None:
  fig_dir = out_dir / "figures"
  names = list(results["models"])
  crit = results["criterion"]
  eps = results["models"][names[0]]["sweep"]["epsilons"]
  rates = {n: {crit: results["models"][n]["sweep"]["success_" + crit],
               "argmax" if crit == "prob" else "prob":
               results["models"][n]["sweep"]["success_" + ("argmax" if crit == "prob"
                                                            else "prob")]}
           for n in names}
  export.save_figure(attack_plots.sweep_curves(
      eps, rates, marker_eps=results["study_eps"],
      title=f"{results['num_images']} {results['split']} images, rule "
            f"{results['target_rule']['rule']}"), fig_dir / "sweep.png")
  export.save_figure(attack_plots.min_eps_histograms(
      {n: arrays[f"{n}/min_eps"] for n in names}, eps_max=cfg.min_eps.eps_max,
      title=f"minimal epsilon ({crit} criterion)"), fig_dir / "min_eps.png")
  tr = results["transfer"]
  export.save_figure(attack_plots.transfer_heatmaps(
      tr["names"], {f"success ({crit})": tr["success_" + crit],
                    "mean target probability": tr["p_target"]},
      title=f"transfer at eps {results['study_eps']}"), fig_dir / "transfer.png")
  ex = results["example"]
  caps = {n: f"p(target)={m['p_target']:.2f}" for n, m in ex["models"].items()}
  export.save_figure(attack_plots.perturbation_maps(
      example["original"], example["advs"], captions=caps,
      title=f"digit {ex['label']} -> {ex['target']}, eps {ex['eps']}"),
      fig_dir / "example_perturbation.png")
  export.save_figure(attack_plots.mean_abs_delta_maps(
      {n: arrays[f"{n}/mean_abs_delta"] for n in names},
      shares={n: results["models"][n]["anatomy"]["chromatic_share"] for n in names},
      title=f"mean |delta| at eps {results['study_eps']}"), fig_dir / "mean_abs_delta.png")
