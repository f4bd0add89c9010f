"""attack_runs(runs, cfg, out_dir): the adversarial analysis of trained runs, end to end.

The attack is built once from cfg.pgd (`pgd.from_config`); every analysis only calls it. For
every run and every seed's replica of it, on the same digits and targets: an epsilon sweep (one
program per batch), per-example minimal epsilon (bisection), the perturbation anatomy and the
clean confidence; across runs, per seed: the transfer matrix. Then, on the models of
cfg.suite.models, per seed, the attack suite and its gradient-masking checks (suite.py). On the
first seed alone: the study's 7 -> 3 example, and on the models of cfg.smoothing.models,
certified accuracy against L2 radius. Writes out_dir/attack.json (each model's entry is its first
seed's, with every seed's in its 'seeds' list), out_dir/attack_arrays.npz and
out_dir/figures/*.png (the first seed's).
"""

import json
import os
import pathlib
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from ccmnist import plots
from ccmnist.attacks import anatomy
from ccmnist.attacks import pgd as pgd_lib
from ccmnist.attacks import smoothing
from ccmnist.attacks import suite as suite_lib
from ccmnist.attacks import sweep
from ccmnist.data import splits as splits_lib
from ccmnist.plots import attacks as attack_plots
from ccmnist.train import runs as runs_lib
from ccmnist.util import batches
from ccmnist.util import io

RESULTS_VERSION = 4  # 2: the anatomy measures beside their null; 3: the suite and smoothing;
# 4: every seed's replica of each model.
STAGE_VERSION = 3  # A model's cached stage (out_dir/stages/): one replica, as in version 3.


def _workdir_replicas(value, replica: int) -> tuple:
  """(workdir, [replicas]) of a run given as a workdir (then `replica`), as (workdir, replica),
  or as (workdir, [the replica of each seed])."""
  if isinstance(value, (tuple, list)):
    value, replica = value
  replicas = list(replica) if isinstance(replica, (tuple, list)) else [replica]
  if not replicas:
    raise ValueError(f"Run {value} names no replica; give one, or one per seed.")
  return str(value), [int(r) for r in replicas]


def _stage_file(out_dir, name: str, seed_index: int, suffix: str) -> pathlib.Path:
  """out_dir/stages/NAME[.seedS]SUFFIX: a model's cached stage per seed (the first seed's
  without a tag, as before seeds were attacked)."""
  tag = f".seed{seed_index}" if seed_index else ""
  return pathlib.Path(out_dir) / "stages" / f"{name}{tag}{suffix}"


def check_config(cfg) -> pgd_lib.Attack:
  """The config's Attack; raises ValueError on a bad setting before any run is loaded."""
  try:
    attack = pgd_lib.from_config(cfg.pgd)
  except ValueError as e:
    raise ValueError(f"config.pgd: {e}") from e
  if cfg.success.criterion not in sweep.CRITERIA:
    raise ValueError(f"config.success.criterion={cfg.success.criterion!r}; use one of "
                     f"{sweep.CRITERIA}.")
  if cfg.sweep.batching not in sweep.BATCHINGS:
    raise ValueError(f"config.sweep.batching={cfg.sweep.batching!r}; use one of "
                     f"{sweep.BATCHINGS}.")
  if cfg.batch_size < 1:
    raise ValueError(f"config.batch_size={cfg.batch_size}; use >= 1.")
  su, sm = cfg.suite, cfg.smoothing
  if not 1 <= su.dlr_targets <= 9 or min(su.steps, su.square_queries, su.check_steps) < 0 \
      or min(su.restarts, su.check_restarts, su.num_images, su.batch_size) < 1:
    raise ValueError("config.suite: need 1 <= dlr_targets <= 9, steps, square_queries and "
                     "check_steps >= 0, restarts, check_restarts, num_images, batch_size >= 1.")
  if min(sm.sigmas, default=0.0) <= 0 or not 0 < sm.alpha < 1 or min(sm.n0, sm.n, sm.chunk) < 1:
    raise ValueError("config.smoothing: need sigmas > 0 (pixel units), 0 < alpha < 1 and n0, n, "
                     "chunk >= 1.")
  return attack


def _load(workdir, replicas: list, conv_impl: str):
  """(model, [params of each replica], config) of a run (its checkpoint restored once), the
  model rebuilt with conv_impl when set."""
  model, stacked, config = runs_lib.load_run(workdir, replica=None)
  num = len(runs_lib.replicas(config))
  if not all(0 <= r < num for r in replicas):
    raise ValueError(f"replicas {replicas} of {workdir} out of range: the run has {num}.")
  params = [jax.tree_util.tree_map(lambda x, r=r: x[r], stacked) for r in replicas]
  if conv_impl and getattr(model, "conv_impl", conv_impl) != conv_impl:
    model = model.clone(conv_impl=conv_impl)
  return model, params, config


def _attack_data(cfg, loaded: dict):
  """(split, data_run, {name: that model's own split}): the examples are chosen on the split of
  cfg.data_run (default: the first run), and each model is attacked on the same digits colored
  as it was trained (a model trained without noise sees them without noise)."""
  data_run = cfg.data_run or next(iter(loaded))
  if data_run not in loaded:
    raise ValueError(f"config.data_run={data_run!r} is not one of the runs {list(loaded)}.")
  own = {}
  for name, (_, _, config) in loaded.items():
    splits = splits_lib.get_splits(config.data)
    if cfg.split not in splits:
      raise ValueError(f"config.split={cfg.split!r}; run {name}'s data has {sorted(splits)}.")
    own[name] = splits[cfg.split]
  ref = own[data_run]
  for name, split in own.items():
    if not (np.array_equal(split["labels"], ref["labels"])
            and np.array_equal(split["colors"], ref["colors"])):
      raise ValueError(f"Run {name}'s {cfg.split} split holds other digits or colors than "
                       f"{data_run}'s; attack runs whose data differ at most in noise and "
                       "background, or attack them separately.")
  return ref, data_run, own


def attack_runs(runs, cfg, out_dir) -> dict:
  """The adversarial analysis of `runs`; returns attack.json's dict.

  runs: {name: workdir, (workdir, replica) or (workdir, [replica of each seed])} (or
  'name=workdir,...', see train.runs.parse_runs); a bare workdir uses cfg.replica. Seed s of
  every model is attacked on the same digits and targets, and compared with seed s of the
  others. cfg: a configs/attack.py config (its `runs` field is ignored here). A finished
  analysis of the same runs and config is read back, not recomputed; a finished model's stage
  per seed (out_dir/stages/NAME[.seedS].*) is reused when its replica and settings match.
  """
  out_dir = pathlib.Path(out_dir)
  runs = {name: _workdir_replicas(v, cfg.replica)
          for name, v in runs_lib.parse_runs(runs).items()}
  attack = check_config(cfg)
  # A run is named by its path from out_dir: a workdir moved whole keeps its finished stages.
  identity = {"version": RESULTS_VERSION,
              "runs": {k: [os.path.relpath(v[0], out_dir), v[1]] for k, v in runs.items()},
              "config": json.loads(json.dumps(cfg.to_dict(), default=str))}
  identity["config"].pop("runs", None)
  results_path = out_dir / "attack.json"
  old = io.read_json(results_path)
  if old is not None:
    if {k: old.get(k) for k in identity} == identity:
      logging.info("%s is up to date; not recomputing.", results_path)
      return old
    logging.info("%s holds another analysis; recomputing.", results_path)

  loaded = {name: _load(wd, reps, cfg.conv_impl) for name, (wd, reps) in runs.items()}
  first = {name: (model, params[0], config) for name, (model, params, config) in loaded.items()}
  split, data_run, own_split = _attack_data(cfg, loaded)
  tc = cfg.targets
  idx, targets = sweep.select_examples(
      split["labels"], split["colors"], rule=tc.rule, target=tc.target, source=tc.source,
      shift=tc.shift, exclude_target_color=tc.exclude_target_color, num=tc.num_images,
      color_class=splits_lib.spec(first[data_run][2].data).color_class, seed=cfg.seed)
  images_of = {name: own_split[name]["images"][idx].astype(np.float32) for name in loaded}
  labels = split["labels"][idx].astype(np.int32)
  attack_labels = targets if attack.targeted else labels
  logging.info("Attacking %d %s images of run %s's data (rule %s).", len(idx), cfg.split,
               data_run, tc.rule)

  epsilons = sorted({float(e) for e in cfg.sweep.epsilons} | {float(attack.eps)})
  key = jax.random.key(cfg.seed)
  crit = cfg.success.criterion

  num_seeds = max(len(reps) for _, reps in runs.values())
  seed_of = lambda name, s: runs_lib.replicas(loaded[name][2])[runs[name][1][s]]["seed"]
  thr, bs = float(cfg.success.threshold), int(cfg.batch_size)
  # per_seed[name][s]: model `name`'s summary at its s-th seed; advs[s]: {name: adversarials}.
  per_seed, advs, arrays = {name: [] for name in loaded}, [], {}
  for s in range(num_seeds):
    advs.append({})
    for name, (model, params, _) in loaded.items():
      if s >= len(params):
        continue
      replica = runs[name][1][s]
      stage = _stage_file(out_dir, name, s, "")
      # A model's stage depends on its replica, the attacked data and the settings, not the
      # other models.
      stage_id = {"version": STAGE_VERSION, "run": [identity["runs"][name][0], replica],
                  "data_run": [identity["runs"][data_run][0], runs[data_run][1][0]],
                  "config": identity["config"], "own_data": True}
      summary, arr = _load_stage(stage, stage_id)
      if summary is None:
        summary, arr = _attack_model(cfg, attack, model, params[s], images_of[name], labels,
                                     attack_labels, key, epsilons)
        _save_stage(stage, stage_id, summary, arr)
      else:
        logging.info("%s seed %d: read the finished sweep and minimal epsilon from %s.", name,
                     s, stage)
      summary = {"replica": replica, "seed": seed_of(name, s), **summary,
                 "clean_confidence": suite_lib.clean_confidence(
                     model, params[s], images_of[name], threshold=thr, batch_size=bs)}
      per_seed[name].append(summary)
      advs[s][name] = arr.pop("adv")
      if s == 0:  # The figures' arrays: the first seed's.
        arrays.update({f"{name}/{k}": v for k, v in arr.items()})
      logging.info("%s seed %d sweep (%s): %s", name, s, crit, dict(zip(epsilons, np.round(
          summary["sweep"]["success_" + crit], 3).tolist())))
      logging.info("%s seed %d minimal eps: %s; clean confidence %s", name, s,
                   summary["min_eps"], summary["clean_confidence"])
  # Each model's entry is its first seed's (the figures'), every seed's in 'seeds'; its clean
  # confidence lists every seed's, as the report quotes it beside the p > threshold rates.
  per_model = {name: {**seeds[0], "seeds": seeds, "clean_confidence": {
      **{k: [e["clean_confidence"][k] for e in seeds]
         for k in ("mean_max_softmax", "share_above_threshold")},
      "threshold": thr, "num_images": len(idx)}} for name, seeds in per_seed.items()}

  transfers = [sweep.transfer_matrix(
      {n: (m_, p_[s]) for n, (m_, p_, _) in loaded.items() if n in advs[s]}, advs[s],
      attack_labels, targeted=attack.targeted, threshold=thr) for s in range(num_seeds)]
  example = _study_example(cfg, attack, split, own_split, first, key)
  robustness = _suite_and_smoothing(cfg, runs, loaded, images_of, labels, targets, advs,
                                    transfers, key, out_dir, identity)

  results = io.finite_or_none({
      **identity,
      "note": "null = not finite (no success within eps_max). Success 'prob': target "
              "probability > threshold; 'argmax': predicted class == target. Each model's "
              "entry is its first seed's; 'seeds' lists every seed's (figures: the first), and "
              "its clean_confidence holds a list over seeds.",
      "seeds": sorted({e["seed"] for seeds in per_seed.values() for e in seeds}),
      "data_run": data_run, "split": cfg.split, "num_images": len(idx),
      "target_rule": tc.to_dict(), "study_eps": float(attack.eps), "criterion": crit,
      "models": per_model, "transfer": transfers[0], "transfer_seeds": transfers,
      "example": example["summary"], **robustness,
  })
  _write_figures(out_dir, cfg, results, arrays, example,
                 seed=f"seed {per_seed[data_run][0]['seed']}")
  io.write_npz(out_dir / "attack_arrays.npz", indices=idx, targets=targets, **arrays)
  io.write_json(results_path, results)
  return results


def _attack_model(cfg, attack, model, params, images, labels, attack_labels, key, epsilons):
  """Sweep, clean rates, minimal epsilon and anatomy of one model, in fixed-size batches.

  Batch b of the sweep uses fold_in(key, b), of the bisection fold_in(key, 10_000 + b).
  """
  thr, crit, bs = float(cfg.success.threshold), cfg.success.criterion, int(cfg.batch_size)
  ev_kw = {"targeted": attack.targeted, "threshold": thr}
  k_study = epsilons.index(float(attack.eps))

  def sweep_batch(b, x, t):
    adv = sweep.sweep(attack, model, params, x, t, epsilons, jax.random.fold_in(key, b),
                      batching=cfg.sweep.batching)
    ev = sweep.evaluate(model, params, adv, t, **ev_kw)
    return {"prob": ev["prob"], "argmax": ev["argmax"], "p": ev["p_label"],
            "adv": adv[k_study][None]}

  out = batches.map_batches(sweep_batch, [images, attack_labels], batch_size=bs, axis=1,
                            with_index=True)
  clean = sweep.evaluate(model, params, images, attack_labels, **ev_kw)
  clean_acc = sweep.evaluate(model, params, images, labels, targeted=True, threshold=thr)
  summary = {"sweep": {
      "epsilons": epsilons, "success_prob": out["prob"].mean(1).tolist(),
      "success_argmax": out["argmax"].mean(1).tolist(),
      "mean_p_target": out["p"].mean(1).tolist(),
      "clean_success_prob": float(np.mean(clean["prob"])),
      "clean_success_argmax": float(np.mean(clean["argmax"])),
      "clean_accuracy": float(np.mean(clean_acc["argmax"]))}}

  m = min(cfg.min_eps.num_images, len(images))
  mins = batches.map_batches(
      lambda b, x, t: sweep.minimal_eps(
          attack, model, params, x, t, jax.random.fold_in(key, 10_000 + b),
          eps_max=cfg.min_eps.eps_max, iters=cfg.min_eps.iters, criterion=crit, threshold=thr),
      [images[:m], attack_labels[:m]], batch_size=min(bs, m), with_index=True)
  summary["min_eps"] = sweep.summarize_min_eps(mins["min_eps"], eps_max=cfg.min_eps.eps_max)
  adv = out["adv"][0]
  anat = anatomy.anatomy_with_null(images, adv, eps=float(attack.eps), norm=attack.norm,
                                   seed=int(cfg.anatomy.null_seed),
                                   threshold=float(cfg.anatomy.stroke_threshold))
  arrays = {"adv": adv.astype(np.float32), "min_eps": mins["min_eps"],
            "mean_abs_delta": anat.pop("mean_abs_map_HWC")}
  summary["anatomy"] = anat
  return summary, arrays


def _selected(models: str, names) -> list:
  """The models of a comma-separated list ('' = all of `names`), in the stage's order."""
  want = [m.strip() for m in models.split(",") if m.strip()]
  unknown = sorted(set(want) - set(names))
  if unknown:  # A size's default list names the study's models; other runs may be attacked.
    logging.warning("Models %s are not among the attacked runs %s; skipped.", unknown, names)
  return [n for n in names if not want or n in want]


def _suite_and_smoothing(cfg, runs, loaded, images_of, labels, targets, advs, transfers, key,
                         out_dir, identity) -> dict:
  """{'suite': ..., 'smoothing': ...} of attack.json: per model and seed the attack suite (and
  its replica) and the masking checks (each model's entry its first seed's, every seed's in
  'seeds'; 'masking_checks_seeds' per seed); certified accuracy against L2 radius of the first
  seed. Each model's suite per seed is cached in out_dir/stages/NAME[.seedS].suite.json under
  its replica and the config."""
  out = {}
  if cfg.suite.enabled:
    n = min(int(cfg.suite.num_images), len(labels))
    names = _selected(cfg.suite.models, list(loaded))
    per_seed = []  # [{name: run_suite's result}] per seed.
    for s, advs_s in enumerate(advs):
      per = {}
      for name in (n_ for n_ in names if n_ in advs_s):
        replica = runs[name][1][s]
        model, params, config = loaded[name]

        def suite(model=model, params=params[s], advs=advs_s[name], name=name, replica=replica):
          pgd_ok = sweep.evaluate(model, params, advs[:n], targets[:n], targeted=True,
                                  threshold=float(cfg.success.threshold))["argmax"]
          res = suite_lib.run_suite(model, params, images_of[name][:n], labels[:n],
                                    targets[:n], cfg=cfg.suite,
                                    key=jax.random.fold_in(key, 40_000),
                                    pgd_targeted_ok=np.asarray(pgd_ok))
          return {**res, "replica": replica}

        res, fresh = _cached(_stage_file(out_dir, name, s, ".suite.json"), "suite",
                             _json_stage_id(name, replica, identity), suite)
        per[name] = {**res, "seed": runs_lib.replicas(config)[replica]["seed"]}
        if fresh:
          logging.info("%s seed %d suite: clean %.3f, robust %s, worst %.3f; targeted %s", name,
                       s, res["clean_accuracy"], res["robust_accuracy"],
                       res["worst_robust_accuracy"], res["targeted"])
      per_seed.append(per)
    checks = [suite_lib.masking_checks(per, transfers[s], tol=float(cfg.suite.tol),
                                       zero_tol=float(cfg.suite.zero_tol))
              for s, per in enumerate(per_seed)]
    for s, checks_s in enumerate(checks):
      for name, cs in checks_s.items():
        for check, c in cs.items():
          if not c["holds"]:
            logging.warning("%s seed %d: masking check %s failed: %s", name, s, check,
                            c["measured"])
    out["suite"] = {
        "models": {name: {**res, "seeds": [p[name] for p in per_seed if name in p]}
                   for name, res in per_seed[0].items()},
        "masking_checks": checks[0], "masking_checks_seeds": checks}
  if cfg.smoothing.enabled:
    n = min(int(cfg.smoothing.num_images), len(labels))
    per = {}
    for name in _selected(cfg.smoothing.models, list(loaded)):
      model, params, _ = loaded[name]
      replica = runs[name][1][0]

      def certify(model=model, params=params[0], name=name, replica=replica):
        res = suite_lib.certify_model(model, params, images_of[name][:n], labels[:n],
                                      cfg=cfg.smoothing, key=jax.random.fold_in(key, 50_000))
        return {**res, "replica": replica}

      t = time.perf_counter()  # Minutes per model in a full run: cached per model, as the suite.
      per[name], fresh = _cached(_stage_file(out_dir, name, 0, ".smoothing.json"), "smoothing",
                                 _json_stage_id(name, replica, identity), certify)
      if fresh:
        logging.info("%s certified accuracy (%.0f s): %s", name, time.perf_counter() - t, {
            s: v["certified_accuracy"] for s, v in per[name]["sigmas"].items()})
    out["smoothing"] = {"models": per, "alpha": float(cfg.smoothing.alpha),
                        "n0": int(cfg.smoothing.n0), "n": int(cfg.smoothing.n)}
  return out


def _json_stage_id(name: str, replica: int, identity: dict) -> dict:
  """What a model's cached JSON stage (its suite, its certificates) depends on: its run and
  replica and the analysis settings."""
  return {"version": STAGE_VERSION, "run": [identity["runs"][name][0], replica],
          "config": identity["config"]}


def _cached(path: pathlib.Path, key: str, stage_id: dict, compute) -> tuple:
  """(value, fresh): path's stored `key` when its identity is stage_id, else compute(), stored
  there under stage_id (so a killed stage keeps what it finished)."""
  saved = io.read_json(path)
  if saved is not None and saved.get("identity") == stage_id:
    return saved[key], False
  value = compute()
  io.write_json(path, io.finite_or_none({"identity": stage_id, key: value}), indent=1)
  return value, True


def _load_stage(stage: pathlib.Path, identity: dict):
  """(summary, arrays) of a model finished by an earlier call with the same identity."""
  meta, data = stage.parent / f"{stage.name}.json", stage.parent / f"{stage.name}.npz"
  saved = io.read_json(meta)
  if saved is None or not data.exists() or saved.get("identity") != identity:
    return None, None
  return saved["summary"], io.read_npz(data)


def _save_stage(stage: pathlib.Path, identity: dict, summary: dict, arrays: dict) -> None:
  io.write_npz(stage.parent / f"{stage.name}.npz", **arrays)
  io.write_json(stage.parent / f"{stage.name}.json",
                io.finite_or_none({"identity": identity, "summary": summary}), indent=1)


def _study_example(cfg, attack, split, own_split, loaded, key) -> dict:
  """The study's single example (source -> target) on every model, at the study's epsilon,
  each model's image colored as it was trained.

  Attacked as a batch of one (its own compiled programs, shared by the models).
  """
  ex = cfg.example
  idx, targets = sweep.select_examples(
      split["labels"], split["colors"], rule="pair", source=ex.source, target=ex.target,
      exclude_target_color=cfg.targets.exclude_target_color, num=1, seed=cfg.seed,
      color_class=splits_lib.spec(loaded[cfg.data_run or next(iter(loaded))][2].data).color_class)
  t = targets if attack.targeted else split["labels"][idx].astype(np.int32)
  ev_kw = {"targeted": attack.targeted, "threshold": float(cfg.success.threshold)}
  summary = {"index": int(idx[0]), "label": int(split["labels"][idx[0]]),
             "color": int(split["colors"][idx[0]]), "target": int(targets[0]),
             "eps": float(attack.eps), "models": {}}
  advs = {}
  originals = {}
  for name, (model, params, _) in loaded.items():
    x = originals[name] = own_split[name]["images"][idx].astype(np.float32)
    adv = np.asarray(attack(model, params, x, t, jax.random.fold_in(key, 20_000)))
    mins = sweep.minimal_eps(attack, model, params, x, t, jax.random.fold_in(key, 30_000),
                             eps_max=cfg.min_eps.eps_max, iters=cfg.min_eps.iters,
                             criterion=cfg.success.criterion, threshold=ev_kw["threshold"])
    ev_clean = sweep.evaluate(model, params, x, t, **ev_kw)
    ev = sweep.evaluate(model, params, adv, t, **ev_kw)
    pred = lambda im, model=model, params=params: int(
        np.argmax(model.apply({"params": params}, jnp.asarray(im))[0]))
    d = (adv - x)[0].astype(np.float64)
    chroma, total = anatomy.chromatic_energy(d[None])
    anat = anatomy.anatomy_with_null(x, adv, eps=float(attack.eps), norm=attack.norm,
                                     seed=int(cfg.anatomy.null_seed),
                                     threshold=float(cfg.anatomy.stroke_threshold))
    advs[name] = adv[0]
    summary["models"][name] = {
        "clean_p_target": float(ev_clean["p_label"][0]), "clean_pred": pred(x),
        "p_target": float(ev["p_label"][0]), "pred": pred(adv),
        "success_prob": bool(ev["prob"][0]), "success_argmax": bool(ev["argmax"][0]),
        "min_eps": float(mins["min_eps"][0]), "l2": float(np.sqrt(total[0])),
        "linf": float(np.abs(d).max()),
        "chromatic_share": float(chroma[0] / max(total[0], 1e-30)),
        **{k: anat[k] for k in ("color_shift_share", "color_shift_share_null",
                                "stroke_energy_share", "stroke_energy_share_null")}}
    logging.info("Example %d -> %d on %s: %s", summary["label"], summary["target"], name,
                 summary["models"][name])
  return {"summary": summary, "originals": {n: x[0] for n, x in originals.items()},
          "advs": advs}


def write_certified_figure(fig_dir, results: dict, *, seed: str) -> None:
  """fig_dir/certified_accuracy.png from attack.json's smoothing entry (its first seed)."""
  sm = results["smoothing"]
  first = next(iter(sm["models"].values()))
  panels = {s: f"sigma {s}" for s in first["sigmas"]}
  plots.save_figure(attack_plots.certified_accuracy_curves(
      first["radii"], {panels[s]: {n: m["sigmas"][s]["certified_accuracy"]
                                   for n, m in sm["models"].items()} for s in panels},
      reach={panels[s]: smoothing.max_radius(float(s), int(sm["n"]), float(sm["alpha"]))
             for s in panels},
      title=f"randomized smoothing, {first['num_images']} images of {results['split']}, "
            f"alpha {sm['alpha']:g}, n {sm['n']}, {seed}"),
      pathlib.Path(fig_dir) / "certified_accuracy.png")


def _write_figures(out_dir, cfg, results, arrays, example, *, seed: str) -> None:
  """The stage's figures, of the first seed (`seed` names it in every title)."""
  fig_dir = out_dir / "figures"
  names = list(results["models"])
  crit = results["criterion"]
  other = "argmax" if crit == "prob" else "prob"
  eps = results["models"][names[0]]["sweep"]["epsilons"]
  rates = {n: {c: results["models"][n]["sweep"]["success_" + c] for c in (crit, other)}
           for n in names}
  plots.save_figure(attack_plots.sweep_curves(
      eps, rates, marker_eps=results["study_eps"], norm=cfg.pgd.norm,
      title=f"{results['num_images']} {results['split']} images, rule "
            f"{results['target_rule']['rule']}, {seed}"), fig_dir / "sweep.png")
  plots.save_figure(attack_plots.min_eps_histograms(
      {n: arrays[f"{n}/min_eps"] for n in names}, eps_max=cfg.min_eps.eps_max,
      title=f"minimal epsilon ({crit} criterion), {seed}"), fig_dir / "min_eps.png")
  tr = results["transfer"]
  plots.save_figure(attack_plots.transfer_heatmaps(
      tr["names"], {f"success ({crit})": tr["success_" + crit],
                    "mean target probability": tr["p_target"]},
      title=f"transfer at eps {results['study_eps']}, {seed}"), fig_dir / "transfer.png")
  ex = results["example"]
  caps = {n: f"p(target)={m['p_target']:.2f}" for n, m in ex["models"].items()}
  plots.save_figure(attack_plots.perturbation_maps(
      example["originals"], example["advs"], captions=caps,
      title=f"digit {ex['label']} -> {ex['target']}, eps {ex['eps']}, {seed}"),
      fig_dir / "example_perturbation.png")
  if (results.get("smoothing") or {}).get("models"):
    write_certified_figure(fig_dir, results, seed=seed)
  plots.save_figure(attack_plots.mean_abs_delta_maps(
      {n: arrays[f"{n}/mean_abs_delta"] for n in names},
      shares={n: (results["models"][n]["anatomy"]["color_shift_share"],
                  results["models"][n]["anatomy"]["color_shift_share_null"]) for n in names},
      title=f"mean |delta| at eps {results['study_eps']}, {seed}"),
      fig_dir / "mean_abs_delta.png")
