"""Did a method remove the color shortcut, or only hide it? Each run at its headline grid point.

For every run of the benchmark, at the grid point its headline selection rule chose
(entries.headline_rule; selection.json says which lambda, and the run's replicas at that
lambda are its seeds, each read at its last epoch or, stopped early, at the epoch its selection
stopped it), on a fixed set of `num_digits` test digits (interpret/representation.py's
`counterfactual_stimuli`: balanced over the classes, each in a random palette color, with its
twin recolored to a color of (nearly) equal channel-mean intensity, `intensity_partners`), per
seed:

  uses color       uses_color: the share of predictions that change when only the color changes
                   (x vs its recolored twin x_cf: the study's `input_swap`); to_cf_color: the
                   share of twins now predicted as the class their new color cues.
                   aligned_accuracy / conflicting_accuracy: the same digits painted in a color
                   that cues their class / in one that cues another (same backgrounds and
                   noise); follows_color: the share of the conflicting digits predicted as the
                   class their color cues; aligned_minus_conflicting: below 0 when the model now
                   avoids the color it was trained on (a reversed bias).
  carries color    color_probe / digit_probe: held-out accuracy (k folds) of ridge probes
                   (`ridge_probe`) for the stroke color and the digit on the features entering
                   the model's head (train/dfr.py head_features: an MLP's last hidden layer, a
                   CNN's penultimate layer); for every exposed conv layer, on its pre-ReLU
                   activations pooled as `pooled_features` does (color_probe@conv0, ...).
  robustness       min_eps: the median minimal epsilon (pixel units, L-inf unless the attack
                   says otherwise) of targeted PGD by bisection (attacks/sweep.py minimal_eps,
                   argmax criterion) on the first `num_attack` digits that sweep.select_examples
                   picks (no digit already painted in its target's cue color); min_eps_found:
                   the share found within eps_max. color_shift_share: the share of the
                   perturbation's energy that is one RGB shift of the stroke
                   (attacks/anatomy.py) at the attack's fixed epsilon, beside
                   color_shift_share_random: the same share of random-sign perturbations of the
                   same budget on the same images.

Null: the same measures of `null_inits` random initializations of the architecture, on the same
stimuli (computed once per architecture and data). The grayscale oracle, when the benchmark runs
it, is the "no color" reference of the report (its own stimuli are grey: what it was trained on).

LfF's coloring (the digit times a jittered palette color on black): its palette has no two colors
of equal channel-mean intensity, so each color's partner is the one of the nearest intensity
(`intensity_gap_mean`, in pixel levels, says how far apart they are on average); the stroke mask
of the color-shift measure is its chromatic-deviation threshold, which LfF's paler colors may
fall below.

Writes DIR/runs/<protocol>/<model>/rho<rho>/<entry>/analysis.json; a run that has one made with
the same settings (config.analyse) at the same grid point is skipped, so the settings may change
between calls on a workdir (stages.IGNORE) and only what they change is recomputed.
"""

import dataclasses
import functools
import json
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ccmnist import models
from ccmnist.attacks import anatomy
from ccmnist.attacks import pgd as pgd_lib
from ccmnist.attacks import sweep
from ccmnist.data import coloring
from ccmnist.data import splits as splits_lib
from ccmnist.interpret import representation as rep_lib
from ccmnist.report import verdicts
from ccmnist.train import dfr
from ccmnist.train import runs as runs_lib
from ccmnist.util import batches
from ccmnist.util import io
from ccmnist.zoo import entries
from ccmnist.zoo import plan

ANALYSIS_FILE = "analysis.json"
VERSION = 1
# The measures of the report's table, in order, with their titles and whether they are rates.
MEASURES = {
    "uses_color": "uses color (predictions changed by recoloring)",
    "follows_color": "conflicting digits predicted as their color's class",
    "aligned_accuracy": "accuracy, aligned digits",
    "conflicting_accuracy": "accuracy, conflicting digits",
    "aligned_minus_conflicting": "aligned minus conflicting accuracy",
    "color_probe": "color probe (penultimate features)",
    "digit_probe": "digit probe (penultimate features)",
    "min_eps": "median minimal ε of targeted PGD (pixels)",
    "color_shift_share": "color-shift share of the perturbation at fixed ε",
}
# Measures that are not rates (printed as numbers, not percentages).
NOT_RATES = ("min_eps",)


def check_config(cfg) -> pgd_lib.Attack:
  """The analysis config's Attack; a ValueError saying what to fix on a bad setting."""
  if cfg.num_digits < 2 * cfg.folds or cfg.folds < 2:
    raise ValueError(f"config.analyse: num_digits={cfg.num_digits}, folds={cfg.folds}; need "
                     "folds >= 2 and num_digits >= 2 * folds.")
  if cfg.null_inits < 2:
    raise ValueError(f"config.analyse.null_inits={cfg.null_inits}; a null needs at least 2.")
  if not 0 <= cfg.num_attack <= cfg.num_digits or cfg.batch_size < 1:
    raise ValueError(f"config.analyse: num_attack={cfg.num_attack} must lie in [0, num_digits="
                     f"{cfg.num_digits}] (0: no robustness measures) and batch_size="
                     f"{cfg.batch_size} >= 1.")
  if cfg.min_eps.eps_max <= 0 or cfg.min_eps.iters < 1:
    raise ValueError("config.analyse.min_eps: need eps_max > 0 and iters >= 1.")
  try:
    attack = pgd_lib.from_config(cfg.pgd)
  except ValueError as e:
    raise ValueError(f"config.analyse.pgd: {e}") from None
  if not attack.targeted:
    raise ValueError("config.analyse.pgd.targeted must be True: the minimal epsilon is that "
                     "of a targeted attack.")
  return attack


# ---------------------------------------------------------------- stimuli

def stimuli(data_cfg, *, num: int, seed: int) -> dict:
  """The stimuli (stimuli_from) of a data config's test digits, colored as it colors."""
  spec = splits_lib.spec(data_cfg)
  grey, labels = splits_lib.load_grey(data_cfg, "test")
  return stimuli_from(grey, labels, num=num, seed=seed, num_classes=spec.num_classes,
                      color_class=spec.color_class, **splits_lib.coloring_kwargs(data_cfg))


def stimuli_from(grey, labels, *, num: int, seed: int, num_classes: int, color_class,
                 **color_kwargs) -> dict:
  """counterfactual_stimuli of grey digits (colorize's keyword arguments), plus 'x_aligned' /
  'x_conflict': the same grey digits (same backgrounds and noise as 'x') painted in a color
  that cues their class / one that cues another, with 'aligned_colors' and 'conflict_colors';
  and 'color_class' (the class each color cues)."""
  stim = rep_lib.counterfactual_stimuli(grey, labels, num=num, num_classes=num_classes,
                                        seed=seed, **color_kwargs)
  color_class = np.asarray(color_class)
  missing = sorted(set(range(num_classes)) - set(color_class.tolist()))
  if missing:
    raise ValueError(f"classes {missing} have no color that cues them: aligned digits need "
                     "one per class (config.data.color_class).")
  rng = np.random.default_rng([seed, 2])
  y = stim["labels"]
  aligned = np.array([rng.choice(np.flatnonzero(color_class == d)) for d in y], np.int32)
  conflict = np.array([rng.choice(np.flatnonzero(color_class != d)) for d in y], np.int32)
  g = np.asarray(grey)[stim["indices"]]
  # The generator counterfactual_stimuli colors with: same backgrounds and noise as x.
  make = lambda cols: coloring.colorize(g, cols, np.random.default_rng([seed, 1]),
                                        **color_kwargs)
  return {**stim, "x_aligned": make(aligned), "x_conflict": make(conflict),
          "aligned_colors": aligned, "conflict_colors": conflict, "color_class": color_class}


def stimuli_key(data_cfg, *, num: int, seed: int) -> str:
  """What the stimuli depend on: the test digits, the coloring, their number and seed."""
  kw = splits_lib.coloring_kwargs(data_cfg)
  spec = splits_lib.spec(data_cfg)
  return json.dumps({"source": data_cfg.source, "seed": data_cfg.seed, "num": num,
                     "stim_seed": seed, "shape": [list(spec.image_shape), spec.num_classes],
                     "color_class": list(spec.color_class),
                     **{k: np.asarray(v).tolist() for k, v in kw.items()}}, sort_keys=True)


# ---------------------------------------------------------------- forward passes over seeds

def _one(model, params, x, layers):
  logits, state = model.apply({"params": params}, x, mutable=["intermediates"])
  acts = {layer: state["intermediates"][layer][0] for layer in layers}
  return logits.argmax(-1), acts, dfr.head_features(model, params, x)


@functools.partial(jax.jit, static_argnames=("model", "layers"))
def _forward_seeds(model, params_S, x, *, layers):
  """(preds [S, B], {layer: [S, B, h, w, c]}, head features [S, B, D]) for stacked params."""
  x = x.astype(jnp.float32)
  return jax.vmap(lambda p: _one(model, p, x, layers))(params_S)


@functools.partial(jax.jit, static_argnames=("model",))
def _predict_seeds(model, params_S, x):
  x = x.astype(jnp.float32)
  return jax.vmap(lambda p: model.apply({"params": p}, x).argmax(-1))(params_S)


def conv_layers(model, params, image_shape) -> tuple:
  """The exposed layers of `model` with a spatial map (its convs), in order."""
  _, state = jax.eval_shape(lambda p: model.apply(
      {"params": p}, models.dummy_input(image_shape), mutable=["intermediates"]), params)
  return tuple(k for k, v in state.get("intermediates", {}).items() if v[0].ndim == 4)


def forward(model, params_S, images, *, layers, batch_size: int):
  """_forward_seeds over fixed-size batches of `images` (numpy out)."""
  return batches.map_batches(
      lambda b: _forward_seeds(model, params_S, jnp.asarray(b), layers=tuple(layers)),
      (np.asarray(images),), batch_size=min(batch_size, len(images)), axis=1)


def predict(model, params_S, images, *, batch_size: int) -> np.ndarray:
  """int[S, N]: each stacked model's predicted classes."""
  return batches.map_batches(lambda b: _predict_seeds(model, params_S, jnp.asarray(b)),
                             (np.asarray(images),), batch_size=min(batch_size, len(images)),
                             axis=1)


def stack(params_list: list):
  """A list of param trees -> one tree with a leading axis."""
  return jax.tree_util.tree_map(lambda *v: jnp.stack(v), *params_list)


def take(params_K, rows):
  """The stacked params' rows `rows`."""
  rows = jnp.asarray(rows)
  return jax.tree_util.tree_map(lambda v: v[rows], params_K)


# ---------------------------------------------------------------- the measures

def behaviour(preds: dict, stim: dict) -> dict:
  """{measure: float64[S]} of the behavioural measures from predictions [S, N] of each image
  set ('x', 'x_cf', 'x_aligned', 'x_conflict')."""
  y, cc = stim["labels"], stim["color_class"]
  aligned = np.mean(preds["x_aligned"] == y, axis=1)
  conflicting = np.mean(preds["x_conflict"] == y, axis=1)
  return {"uses_color": np.mean(preds["x"] != preds["x_cf"], axis=1),
          "to_cf_color": np.mean(preds["x_cf"] == cc[stim["cf_colors"]], axis=1),
          "aligned_accuracy": aligned, "conflicting_accuracy": conflicting,
          "aligned_minus_conflicting": aligned - conflicting,
          "follows_color": np.mean(preds["x_conflict"] == cc[stim["conflict_colors"]], axis=1)}


def probes(acts: dict, head, stim: dict, *, folds, alpha: float, grid: int, num_classes: int,
           num_colors: int) -> dict:
  """{measure: float64[S]}: color and digit probes on the head's features and on every conv
  layer's pooled activations (keys 'color_probe', 'digit_probe', 'color_probe@conv0', ...)."""
  kw = dict(folds=folds, alpha=alpha)
  feats = {"": np.asarray(head)}
  feats.update({f"@{layer}": np.stack([rep_lib.pooled_features(a, grid=grid) for a in v])
                for layer, v in acts.items()})
  out = {}
  for suffix, f in feats.items():
    out[f"color_probe{suffix}"] = np.array([
        rep_lib.ridge_probe(f_s, stim["colors"], num_classes=num_colors, **kw) for f_s in f])
    out[f"digit_probe{suffix}"] = np.array([
        rep_lib.ridge_probe(f_s, stim["labels"], num_classes=num_classes, **kw) for f_s in f])
  return out


def attack_set(stim: dict, cfg) -> tuple:
  """(images float32[n], targets int32[n]): the digits the robustness measures attack."""
  idx, targets = sweep.select_examples(
      stim["labels"], stim["colors"], rule=cfg.targets.rule, target=cfg.targets.target,
      source=cfg.targets.source, shift=cfg.targets.shift, exclude_target_color=True,
      num=cfg.num_attack, color_class=stim["color_class"], seed=cfg.seed)
  return stim["x"][idx].astype(np.float32), targets


def robustness(model, params, images, targets, attack, cfg) -> dict:
  """{'min_eps', 'min_eps_found', 'color_shift_share', 'color_shift_share_random'} of one model
  (the study's attack stage's functions: sweep.minimal_eps, sweep.sweep at the attack's
  epsilon, anatomy.anatomy_with_null; batch b keyed fold_in(key, b) and fold_in(key,
  10_000 + b) as attacks/run.py keys them)."""
  key = jax.random.key(cfg.seed)
  bs = min(int(cfg.batch_size), len(images))
  mins = batches.map_batches(
      lambda b, x, t: sweep.minimal_eps(
          attack, model, params, x, t, jax.random.fold_in(key, 10_000 + b),
          eps_max=cfg.min_eps.eps_max, iters=cfg.min_eps.iters, criterion="argmax"),
      [images, targets], batch_size=bs, with_index=True)
  summary = sweep.summarize_min_eps(mins["min_eps"], eps_max=cfg.min_eps.eps_max)
  adv = batches.map_batches(
      lambda b, x, t: sweep.sweep(attack, model, params, x, t, [float(attack.eps)],
                                  jax.random.fold_in(key, b))[0],
      [images, targets], batch_size=bs, with_index=True)
  anat = anatomy.anatomy_with_null(images, adv, eps=float(attack.eps), norm=attack.norm,
                                   seed=int(cfg.anatomy.null_seed),
                                   threshold=float(cfg.anatomy.stroke_threshold))
  return {"min_eps": summary["median"], "min_eps_found": summary["found_within_eps_max"],
          "color_shift_share": anat.get("color_shift_share", np.nan),
          "color_shift_share_random": anat.get("color_shift_share_null", np.nan)}


def analyse_models(model, params_S, stim: dict, cfg, attack, *, layers, num_classes: int,
                   num_colors: int) -> dict:
  """{measure: float64[S]} of every measure (module docstring) of S stacked models."""
  bs = int(cfg.batch_size)
  preds_x, acts, head = forward(model, params_S, stim["x"], layers=layers, batch_size=bs)
  preds = {"x": preds_x}
  for name in ("x_cf", "x_aligned", "x_conflict"):
    preds[name] = predict(model, params_S, stim[name], batch_size=bs)
  out = behaviour(preds, stim)
  out.update(probes(acts, head, stim, folds=rep_lib.folds_of(len(stim["labels"]), cfg.folds,
                                                             cfg.seed),
                    alpha=cfg.alpha, grid=cfg.grid, num_classes=num_classes,
                    num_colors=num_colors))
  if not cfg.num_attack:  # The robustness measures are asked for by num_attack > 0.
    return {k: np.asarray(v, np.float64) for k, v in out.items()}
  images, targets = attack_set(stim, cfg)
  n = len(jax.tree_util.tree_leaves(params_S)[0])
  rob = [robustness(model, jax.tree_util.tree_map(lambda v, s=s: v[s], params_S), images,
                    targets, attack, cfg) for s in range(n)]
  for k in rob[0]:
    out[k] = np.array([r[k] for r in rob], np.float64)
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def null_models(model, cfg, image_shape):
  """The stacked random initializations of `model` (keys null_seed, null_seed + 1, ...)."""
  return stack(rep_lib.random_params(model, inits=cfg.null_inits, seed=cfg.null_seed,
                                     image_shape=image_shape))


# ---------------------------------------------------------------- one run

def headline_point(bench, run: plan.Run, selection: dict) -> dict | None:
  """{'rule', 'index', 'lam', 'entry', 'seeds'} of the run's headline selection, and 'epochs'
  (each seed's) when it was stopped early; None without one."""
  rule = entries.headline_rule(bench, run.entry)
  sel = (selection.get(run.key) or {}).get(rule)
  if not sel:
    return None
  out = {"rule": rule, "index": int(sel["index"]), "lam": float(sel["lam"]),
         "entry": sel.get("entry") or run.entry, "seeds": list(sel["seeds"])}
  if sel.get("epochs") is not None:  # Absent otherwise: analyses made before stay valid.
    out["epochs"] = [int(e) for e in sel["epochs"]]
  return out


def params_at(rdir, reps: list, epochs: list | None):
  """(model, [S, ...] params of replicas `reps`, config): the last epoch's, or replica reps[s]
  after epochs[s] (a stopped selection's)."""
  if epochs is None:
    model, params_K, config = runs_lib.load_run(rdir, replica=None)
    return model, take(params_K, reps), config
  at = {e: runs_lib.load_run(rdir, replica=None, epoch=e) for e in set(epochs)}  # One each.
  model, _, config = at[epochs[0]]
  rows = [jax.tree_util.tree_map(lambda v, r=r: v[r], at[e][1]) for r, e in zip(reps, epochs)]
  return model, jax.tree_util.tree_map(lambda *v: jnp.stack(v), *rows), config


def analyse_run(bench, workdir, run: plan.Run, point: dict, *, null_cache: dict,
                stim_cache: dict) -> dict:
  """analysis.json's dict of one run at its headline grid point (module docstring)."""
  t0 = time.perf_counter()
  cfg = bench.analyse
  attack = check_config(cfg)
  # A family's selected point may lie in a member's run (select.py names its entry).
  rdir = plan.run_dir(workdir, dataclasses.replace(run, entry=point["entry"]))
  config = runs_lib.load_config(rdir)
  spec = splits_lib.spec(config.data)
  reps = [r["replica"] for r in runs_lib.replicas(config) if r["lam"] == point["lam"]]
  if not reps:
    raise ValueError(f"{rdir} holds no replica at the selected lambda {point['lam']} (its grid: "
                     f"{runs_lib.lam_grid(config)}); rerun the select stage "
                     "(--config.only=select,analyse).")
  skey = stimuli_key(config.data, num=cfg.num_digits, seed=cfg.seed)
  if skey not in stim_cache:
    stim_cache.clear()  # Runs of one data config come together: keep one.
    stim_cache[skey] = stimuli(config.data, num=cfg.num_digits, seed=cfg.seed)
  stim = stim_cache[skey]
  model, params_S, _ = params_at(rdir, reps, point.get("epochs"))
  layers = conv_layers(model, jax.tree_util.tree_map(lambda v: v[0], params_S),
                       spec.image_shape)
  kw = dict(layers=layers, num_classes=spec.num_classes, num_colors=spec.num_colors)
  measures = analyse_models(model, params_S, stim, cfg, attack, **kw)
  nkey = (type(model).__name__, json.dumps(config.model.to_dict(), sort_keys=True), skey)
  if nkey not in null_cache:
    null_cache[nkey] = analyse_models(model, null_models(model, cfg, spec.image_shape), stim,
                                      cfg, attack, **kw)
  null = null_cache[nkey]
  return io.finite_or_none({
      "settings": settings(bench, point), "run": run.key,
      "point": {**point, "replicas": reps},
      "stimuli": {"num_digits": int(len(stim["labels"])), "num_attack": int(cfg.num_attack),
                  "intensity_gap_mean": float(stim["intensity_gap_mean"]),
                  "null_inits": int(cfg.null_inits), "layers": list(layers),
                  "grayscale": bool(config.data.get("grayscale", False)),
                  "attack": {**cfg.pgd.to_dict(), "criterion": "argmax",
                             "eps_max": float(cfg.min_eps.eps_max)}},
      "measures": {k: v.tolist() for k, v in measures.items()},
      "null": {k: v.tolist() for k, v in null.items()},
      "timing": {"seconds": time.perf_counter() - t0}})


def settings(bench, point: dict) -> dict:
  """What an analysis.json depends on besides the run: the analyse config and the point."""
  return {"version": VERSION, "config": bench.analyse.to_dict(), "point": point}


def analysed(bench, workdir, run: plan.Run, point: dict) -> bool:
  """Whether the run has an analysis.json made with these settings at this grid point."""
  old = io.read_json(plan.run_dir(workdir, run) / ANALYSIS_FILE)
  want = json.loads(json.dumps(settings(bench, point)))  # Tuples as JSON reads them back.
  return old is not None and old.get("settings") == want


def rows(bench) -> list:
  """The runs the analysis covers: every report row's (config.methods' entries) in every
  cell, in training order. An identification run and a family member's run are not rows:
  a row's selected point in a member's run is analysed as the row's."""
  names = set(plan.method_entries(bench))
  return [r for r in plan.all_runs(bench) if r.entry in names]


def todo(bench, workdir, selection: dict) -> list:
  """The rows with a headline selection and no analysis of it under these settings yet, in
  training order."""
  out = []
  for run in rows(bench):
    point = headline_point(bench, run, selection)
    if point is not None and not analysed(bench, workdir, run, point):
      out.append(run)
  return out


def analyse_all(bench, workdir, selection: dict) -> int:
  """Analyses every run todo() lists, logging progress; returns how many."""
  check_config(bench.analyse)
  left = todo(bench, workdir, selection)
  null_cache, stim_cache, t_start = {}, {}, time.perf_counter()
  for k, run in enumerate(left):
    t0 = time.perf_counter()
    out = analyse_run(bench, workdir, run, headline_point(bench, run, selection),
                      null_cache=null_cache, stim_cache=stim_cache)
    io.write_json(plan.run_dir(workdir, run) / ANALYSIS_FILE, out, indent=1)
    spent = time.perf_counter() - t_start
    logging.info("[benchmark analyse %d/%d] %s in %.1fs (uses color %s); ETA %.0fs", k + 1,
                 len(left), run.key, time.perf_counter() - t0,
                 np.round(out["measures"]["uses_color"], 3).tolist(),
                 spent / (k + 1) * (len(left) - k - 1))
  return len(left)


# ---------------------------------------------------------------- the record and its verdicts

def stat_of(values) -> dict:
  """mean, std (ddof 1), n and the per-seed values; None values (not found) kept as None."""
  v = [None if x is None else float(x) for x in values]
  ok = np.asarray([x for x in v if x is not None], np.float64)
  return {"mean": float(ok.mean()) if ok.size else None,
          "std": float(ok.std(ddof=1)) if ok.size > 1 else (0.0 if ok.size else None),
          "n": int(ok.size), "values": v}


def record(analysis: dict) -> dict:
  """{measure: stat, measure_null: stat of the random inits, ...} of one analysis.json."""
  out = {"point": analysis["point"], "stimuli": analysis["stimuli"],
         "timing": analysis.get("timing")}
  for k, v in analysis["measures"].items():
    out[k] = stat_of(v)
    out[f"{k}_null"] = stat_of(analysis["null"][k])
  return out


def collect(bench, workdir) -> dict:
  """{run key: record()} of every row that has an analysis.json."""
  out = {}
  for run in rows(bench):
    a = io.read_json(plan.run_dir(workdir, run) / ANALYSIS_FILE)
    if a is not None:
      out[run.key] = record(a)
  return out


def versus_erm(erm: dict, other: dict) -> tuple | None:
  """(holds, strength, mean difference) of "other - erm > 0": report/verdicts.py's paired
  t-test over seeds, at its level, uncorrected (one comparison); None when either lacks a
  seed."""
  return _judged(erm_test(erm, other))


def _judged(test: dict | None) -> tuple | None:
  """(holds, strength, mean difference) of a test's "above" claim (verdicts.decide); None
  without a test."""
  if test is None:
    return None
  holds, strength = verdicts.decide(test, direction=1)
  return holds, strength, test["mean"]


def erm_test(erm: dict, other: dict) -> dict | None:
  """verdicts.paired_test of other - erm over seeds; None when either lacks a seed."""
  a, b = erm["values"], other["values"]
  if len(a) != len(b) or not a or any(x is None for x in a + b):
    return None
  return verdicts.paired_test(a, b)


def null_test(stat: dict, null: dict, *, level: float = verdicts.LEVEL) -> dict | None:
  """Welch's t-test (scipy.stats.ttest_ind, unequal variances, two-sided) of the seeds' mean
  against the random inits' mean (unpaired: an init is no seed's twin), shaped as
  verdicts.paired_test's dict so that verdicts.decide judges it; None without values. A seed
  whose value is missing (a minimal epsilon not found) leaves it untested."""
  a = np.asarray([x for x in null["values"] if x is not None], np.float64)
  b = np.asarray([x for x in stat["values"] if x is not None], np.float64)
  if not a.size or not b.size or len(b) != len(stat["values"]):
    return None
  # Rates computed as floats: values equal up to rounding have no spread at all (where scipy's
  # t would be a ratio of rounding errors), as verdicts.paired_test treats them.
  snap = lambda v: np.full_like(v, v.mean()) if np.ptp(v) <= 1e-12 * max(1.0, abs(v.mean())) \
      else v
  a, b = snap(a), snap(b)
  mean = float(b.mean() - a.mean())
  out = {"test": "Welch t", "level": level, "statistic": None, "df": None, "p": None,
         "p_exact": None, "mean": mean, "ci": None, "n": int(b.size), "values": b.tolist(),
         "reason": None}
  if b.size == 1:
    out["reason"] = verdicts.INDICATIVE
  elif a.size < 2:
    out["reason"] = "one random init: no spread to test against"
  elif np.ptp(a) == 0 and np.ptp(b) == 0:
    # No spread on either side, t undefined: the exact permutation test of the mean
    # difference over every split of the pooled values stands in (verdicts' sign-flip twin).
    r = stats.permutation_test((b, a), lambda x, y, axis: x.mean(axis) - y.mean(axis),
                               permutation_type="independent", n_resamples=np.inf,
                               vectorized=True)
    out.update(test="exact permutation (no spread: t undefined)", p=float(r.pvalue))
  elif np.ptp(a) == 0 or np.ptp(b) == 0:
    # One side without spread: Welch's t reduces to the one-sample t-test of the other side
    # against that constant (df its size - 1), computed so, without scipy's warning on constant
    # data.
    sign, varied, const = (1.0, b, a[0]) if np.ptp(a) == 0 else (-1.0, a, b[0])
    r = stats.ttest_1samp(varied, const)
    out.update(statistic=sign * float(r.statistic), df=float(varied.size - 1),
               p=float(r.pvalue))
  else:
    r = stats.ttest_ind(b, a, equal_var=False)
    out.update(statistic=float(r.statistic), df=float(r.df), p=float(r.pvalue))
  return out


def versus_null(stat: dict, null: dict) -> tuple | None:
  """(holds, strength, mean difference) of "the seeds' mean lies above the random inits'
  mean" (null_test, judged by verdicts.decide at its level, uncorrected); None without
  values."""
  return _judged(null_test(stat, null))
