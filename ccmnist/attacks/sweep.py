"""Analyses built on an Attack: epsilon sweep, minimal epsilon, transfer; example choice.

Each analysis of one batch is ONE compiled program (callers batch with util.batches, so every
batch has the same shape and the program compiles once):
  * `sweep`: the attack vmapped (or lax.mapped) over the epsilons [E], the same random start
    direction for every epsilon, scaled by it; adversarial images [E, N, H, W, C];
  * `minimal_eps`: bisection under `lax.fori_loop`, each iteration one batched attack with a
    per-example epsilon [N].
Epsilon has one form per level: [E] for a sweep, [N] per example inside a program.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.attacks import pgd as pgd_lib
from ccmnist.data import groups

TARGET_RULES = ("fixed", "pair", "shift")
CRITERIA = ("prob", "argmax")
BATCHINGS = ("vmap", "map")


# ---------------------------------------------------------------- which examples, which targets

def select_examples(labels, colors, *, rule: str, target: int = 3, source: int = 7,
                    shift: int = 1, exclude_target_color: bool = True, num: int,
                    color_class, seed: int = 0):
  """(indices [n], targets [n]) of the examples to attack and their target classes.

  rule 'fixed': every digit other than `target` -> `target` (the study's target 3);
  'pair': digits `source` -> `target` (the study's 7 -> 3); 'shift': label -> (label + shift) %
  the number of classes. exclude_target_color drops images painted in a color that cues the
  target (color_class: splits.Spec.color_class): for a color-reading
  model those are already 'attacked' by the data (the color-swap probe), not by the adversary.
  The first `num` eligible examples of a seeded permutation, so the set is fixed by the seed.
  """
  labels, colors = np.asarray(labels), np.asarray(colors)
  if rule == "fixed":
    targets = np.full_like(labels, target)
    ok = labels != target
  elif rule == "pair":
    if source == target:
      raise ValueError(f"targets.source and targets.target are both {source}; pick two digits.")
    targets = np.full_like(labels, target)
    ok = labels == source
  elif rule == "shift":
    num_classes = max(color_class) + 1
    if shift % num_classes == 0:
      raise ValueError(f"targets.shift={shift} maps every digit to itself; use 1.."
                       f"{num_classes - 1}.")
    targets = (labels + shift) % num_classes
    ok = np.ones(labels.shape, bool)
  else:
    raise ValueError(f"Unknown target rule {rule!r}; use one of {TARGET_RULES}.")
  if exclude_target_color:
    ok &= ~groups.aligned(colors, targets, color_class)
  order = np.random.default_rng([seed, 11]).permutation(len(labels))
  idx = order[ok[order]][:num]
  if len(idx) == 0:
    raise ValueError(f"No example fits target rule {rule!r}; check the split and targets.")
  return np.sort(idx), targets[np.sort(idx)].astype(np.int32)


# ---------------------------------------------------------------- compiled programs

def sweep_program(params, images, labels, eps_E, key, *, model, attack, batching: str):
  """Adversarial images [E, N, H, W, C] for every epsilon, in one program.

  batching 'vmap' batches the epsilons into every step (E*N images per backward pass: what an
  accelerator wants); 'map' runs them one after another inside the program (lax.map), which
  keeps the working set of one epsilon (can be cheaper on a small CPU). Same images.
  """
  pgd_lib.TRACE_COUNTS["sweep"] += 1
  n = images.shape[0]

  def at(eps):
    eps_N = jnp.broadcast_to(eps, (n,))
    return pgd_lib.pgd_program(params, images, labels, eps_N, attack.step_for(eps_N), key,
                               model=model, **attack.settings)

  if batching == "vmap":
    return jax.vmap(at)(eps_E)
  if batching == "map":
    return jax.lax.map(at, eps_E)
  raise ValueError(f"Unknown sweep batching {batching!r}; use one of {BATCHINGS}.")


_sweep_jit = jax.jit(sweep_program, static_argnames=("model", "attack", "batching"))


def sweep(attack, model, params, images, labels, epsilons, key, *, batching="vmap"):
  """`attack` at every epsilon of `epsilons` [E] in one program; adv images [E, N, H, W, C].

  Same key for every epsilon, so element e equals attack(..., key, eps=epsilons[e]).
  """
  pgd_lib.check_inputs(images, labels, eps=0.0, norm=attack.norm, loss=attack.loss)
  if batching not in BATCHINGS:
    raise ValueError(f"Unknown sweep batching {batching!r}; use one of {BATCHINGS}.")
  eps_E = jnp.asarray(epsilons, jnp.float32).reshape(-1)
  if bool(jnp.any(eps_E < 0)):
    raise ValueError(f"epsilons must be >= 0; got {epsilons}.")
  return _sweep_jit(params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                    eps_E, key, model=model, attack=attack, batching=batching)


def evaluate_program(params, images, labels, *, model, targeted: bool, threshold: float):
  """{'prob', 'argmax'} success (bool) and 'p_label' (probability of labels/targets), each [N]."""
  logits = model.apply({"params": params}, images.astype(jnp.float32))
  out = pgd_lib.attack_success(logits, labels, targeted=targeted, threshold=threshold)
  p = jax.nn.softmax(logits, -1)
  out["p_label"] = jnp.take_along_axis(p, labels[:, None], axis=-1)[:, 0]
  return out


_evaluate_jit = jax.jit(evaluate_program, static_argnames=("model", "targeted", "threshold"))


def evaluate(model, params, images, labels, *, targeted=True, threshold=0.9) -> dict:
  """Success of (adversarial) images against labels/targets; leading dims of images kept."""
  lead = images.shape[:-3]
  out = _evaluate_jit(params, jnp.asarray(images).reshape((-1,) + images.shape[-3:]),
                      jnp.broadcast_to(jnp.asarray(labels, jnp.int32), lead).reshape(-1),
                      model=model, targeted=bool(targeted), threshold=float(threshold))
  return {k: v.reshape(lead) for k, v in out.items()}


def min_eps_program(params, images, labels, eps_max, key, *, model, attack, iters: int,
                    criterion: str, threshold: float):
  """Per-example smallest successful epsilon by bisection on [0, eps_max]; one program.

  Returns {'min_eps': hi where found else inf (0 if the clean image already succeeds),
  'lo', 'hi': the final bracket, 'found': bool}. Each iteration is one batched attack with a
  per-example epsilon; the same key every iteration, so only epsilon changes.
  """
  pgd_lib.TRACE_COUNTS["min_eps"] += 1
  n = images.shape[0]
  x0 = images.astype(jnp.float32)

  def ok_at(x):
    logits = model.apply({"params": params}, x)
    return pgd_lib.attack_success(logits, labels, targeted=attack.targeted,
                                  threshold=threshold)[criterion]

  def succeeds(eps_N):
    return ok_at(pgd_lib.pgd_program(params, x0, labels, eps_N, attack.step_for(eps_N), key,
                                     model=model, **attack.settings))

  clean_ok = ok_at(x0)
  hi0 = jnp.full((n,), eps_max, jnp.float32)
  max_ok = succeeds(hi0)

  def body(_, bracket):
    lo, hi = bracket
    mid = 0.5 * (lo + hi)
    s = succeeds(mid)
    return jnp.where(s, lo, mid), jnp.where(s, mid, hi)

  lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.zeros((n,), jnp.float32), hi0))
  found = clean_ok | max_ok | (hi < eps_max)
  min_eps = jnp.where(clean_ok, 0.0, jnp.where(found, hi, jnp.inf))
  return {"min_eps": min_eps, "lo": jnp.where(clean_ok, 0.0, lo),
          "hi": jnp.where(clean_ok, 0.0, hi), "found": found}


_min_eps_jit = jax.jit(min_eps_program, static_argnames=(
    "model", "attack", "iters", "criterion", "threshold"))


def minimal_eps(attack, model, params, images, labels, key, *, eps_max, iters,
                criterion="prob", threshold=0.9) -> dict:
  """Per-example minimal epsilon of `attack` by bisection (see min_eps_program); numpy [N]."""
  if criterion not in CRITERIA:
    raise ValueError(f"Unknown success criterion {criterion!r}; use one of {CRITERIA}.")
  if eps_max <= 0 or iters < 1:
    raise ValueError(f"eps_max must be > 0 and iters >= 1; got {eps_max}, {iters}.")
  pgd_lib.check_inputs(images, labels, eps=eps_max, norm=attack.norm, loss=attack.loss)
  out = _min_eps_jit(params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                     jnp.float32(eps_max), key, model=model, attack=attack, iters=int(iters),
                     criterion=criterion, threshold=float(threshold))
  return {k: np.asarray(v) for k, v in out.items()}


# ---------------------------------------------------------------- analyses

def transfer_matrix(models_params: dict, advs: dict, targets, *, targeted=True,
                    threshold=0.9) -> dict:
  """Adversarial examples of source A evaluated on model B, every ordered pair.

  models_params: {name: (model, params)}; advs: {name: adv images [N, H, W, C] crafted on it}.
  Returns {'names', 'success_prob', 'success_argmax', 'p_target'}: [source][evaluated on] lists.
  """
  names = list(models_params)
  out = {"names": names, "success_prob": [], "success_argmax": [], "p_target": []}
  for src in names:
    rows = {"success_prob": [], "success_argmax": [], "p_target": []}
    for dst in names:
      model, params = models_params[dst]
      ev = evaluate(model, params, advs[src], targets, targeted=targeted, threshold=threshold)
      rows["success_prob"].append(float(np.mean(ev["prob"])))
      rows["success_argmax"].append(float(np.mean(ev["argmax"])))
      rows["p_target"].append(float(np.mean(ev["p_label"])))
    for k, v in rows.items():
      out[k].append(v)
  return out


def summarize_min_eps(min_eps, *, eps_max: float) -> dict:
  """Median (inf when most fail), quartiles and the share found within eps_max."""
  m = np.asarray(min_eps, np.float64)
  finite = np.isfinite(m)
  # 'inverted_cdf' returns data points, so failures (inf) never turn into nan by interpolation.
  q = lambda p: float(np.quantile(m, p, method="inverted_cdf")) if m.size else float("nan")
  return {"median": q(0.5), "q25": q(0.25), "q75": q(0.75),
          "found_within_eps_max": float(finite.mean()), "eps_max": float(eps_max),
          "mean_of_found": float(m[finite].mean()) if finite.any() else float("nan"),
          "n": int(m.size)}
