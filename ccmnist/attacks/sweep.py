"""Analyses built on PGD: epsilon sweeps, minimal epsilon, transfer, perturbation anatomy.

All attack programs run on fixed-shape batches (the last one padded), so each compiles once:
  * an epsilon sweep is ONE program, `pgd_program` vmapped over the epsilons (same random start
    direction for every epsilon, scaled by it), returning [E, N, H, W, C];
  * the minimal epsilon is ONE program: bisection under `lax.fori_loop`, each iteration one
    batched attack with a per-example epsilon.
"""

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.attacks import pgd as pgd_lib

TARGET_RULES = ("fixed", "pair", "shift")
CRITERIA = ("prob", "argmax")


# ---------------------------------------------------------------- which examples, which targets

def select_examples(labels, colors, *, rule: str, target: int = 3, source: int = 7,
                    shift: int = 1, exclude_target_color: bool = True, num: int,
                    seed: int = 0):
  """(indices [n], targets [n]) of the examples to attack and their target classes.

  rule 'fixed': every digit other than `target` -> `target` (the study's target 3);
  'pair': digits `source` -> `target` (the study's 7 -> 3); 'shift': label -> (label + shift) % 10.
  exclude_target_color drops images painted in the target's palette color: for a color-reading
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
    if shift % 10 == 0:
      raise ValueError(f"targets.shift={shift} maps every digit to itself; use 1..9.")
    targets = (labels + shift) % 10
    ok = np.ones(labels.shape, bool)
  else:
    raise ValueError(f"Unknown target rule {rule!r}; use one of {TARGET_RULES}.")
  if exclude_target_color:
    ok &= colors != targets
  order = np.random.default_rng([seed, 11]).permutation(len(labels))
  idx = order[ok[order]][:num]
  if len(idx) == 0:
    raise ValueError(f"No example fits target rule {rule!r}; check the split and targets.")
  return np.sort(idx), targets[np.sort(idx)].astype(np.int32)


# ---------------------------------------------------------------- compiled programs

EPS_BATCHING = ("vmap", "map")


def sweep_program(params, images, labels, eps_E, step_E, key, *, eps_batching: str = "vmap",
                  **static):
  """Adversarial images [E, N, H, W, C] for every epsilon, in one program.

  eps_batching 'vmap' batches the epsilons into every step (E*N images per backward pass:
  what an accelerator wants); 'map' runs them one after another inside the program
  (lax.map), which keeps the working set of one epsilon (can be cheaper on a small CPU).
  Both give the same images.
  """
  pgd_lib.TRACE_COUNTS["sweep"] += 1
  n = images.shape[0]
  f = functools.partial(pgd_lib.pgd_program, **static)
  eps_EN = jnp.broadcast_to(eps_E[:, None], (eps_E.shape[0], n))
  step_EN = jnp.broadcast_to(step_E[:, None], (step_E.shape[0], n))
  if eps_batching == "vmap":
    return jax.vmap(f, in_axes=(None, None, None, 0, 0, None))(
        params, images, labels, eps_EN, step_EN, key)
  if eps_batching == "map":
    return jax.lax.map(lambda es: f(params, images, labels, es[0], es[1], key),
                       (eps_EN, step_EN))
  raise ValueError(f"Unknown eps_batching {eps_batching!r}; use one of {EPS_BATCHING}.")


_sweep_jit = jax.jit(sweep_program, static_argnames=pgd_lib._STATIC + ("eps_batching",))  # pylint: disable=protected-access


def pgd_sweep(model, params, images, labels, *, epsilons, step_size, steps, norm="linf",
              targeted=False, random_start=True, loss="ce", restarts=1, key,
              eps_batching="vmap"):
  """PGD at every epsilon of `epsilons` [E] in one program; adv images [E, N, H, W, C].

  step_size: a scalar or one per epsilon [E]. Same key for every epsilon, so element e equals
  pgd(..., eps=epsilons[e], step_size=step_size[e], key=key).
  """
  pgd_lib.check_inputs(images, labels, eps=0.0, norm=norm, loss=loss, steps=steps,
                       restarts=restarts)
  if eps_batching not in EPS_BATCHING:
    raise ValueError(f"Unknown eps_batching {eps_batching!r}; use one of {EPS_BATCHING}.")
  eps_E = jnp.asarray(epsilons, jnp.float32).reshape(-1)
  if bool(jnp.any(eps_E < 0)):
    raise ValueError(f"epsilons must be >= 0; got {epsilons}.")
  step_E = jnp.broadcast_to(jnp.asarray(step_size, jnp.float32), eps_E.shape)
  return _sweep_jit(params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                    eps_E, step_E, key, model=model, steps=int(steps), norm=norm,
                    targeted=bool(targeted), random_start=bool(random_start), loss=loss,
                    restarts=int(restarts), eps_batching=eps_batching)


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


def min_eps_program(params, images, labels, eps_max, step_size, step_rel, key, *, model,
                    iters: int, criterion: str, threshold: float, **static):
  """Per-example smallest successful epsilon by bisection on [0, eps_max]; one program.

  Returns {'min_eps': hi where found else inf (0 if the clean image already succeeds),
  'lo', 'hi': the final bracket, 'found': bool}. Each iteration is one batched attack with a
  per-example epsilon; the same key every iteration, so only epsilon changes. The step is
  step_size, or step_rel * eps when step_rel > 0.
  """
  pgd_lib.TRACE_COUNTS["min_eps"] += 1
  n = images.shape[0]
  x0 = images.astype(jnp.float32)
  targeted = static["targeted"]

  def ok_at(x):
    logits = model.apply({"params": params}, x)
    return pgd_lib.attack_success(logits, labels, targeted=targeted,
                                  threshold=threshold)[criterion]

  def succeeds(eps_N):
    step_N = jnp.where(step_rel > 0, step_rel * eps_N, step_size)
    return ok_at(pgd_lib.pgd_program(params, x0, labels, eps_N, step_N, key, model=model,
                                     **static))

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


_min_eps_jit = jax.jit(min_eps_program,
                       static_argnames=pgd_lib._STATIC + ("iters", "criterion", "threshold"))  # pylint: disable=protected-access


def minimal_eps(model, params, images, labels, *, eps_max, iters, step_size, steps,
                step_rel=0.0, norm="linf", targeted=True, random_start=True, loss="ce",
                restarts=1, criterion="prob", threshold=0.9, key) -> dict:
  """Per-example minimal epsilon by bisection (see min_eps_program); numpy arrays [N]."""
  if criterion not in CRITERIA:
    raise ValueError(f"Unknown success criterion {criterion!r}; use one of {CRITERIA}.")
  if eps_max <= 0 or iters < 1:
    raise ValueError(f"eps_max must be > 0 and iters >= 1; got {eps_max}, {iters}.")
  pgd_lib.check_inputs(images, labels, eps=eps_max, norm=norm, loss=loss, steps=steps,
                       restarts=restarts)
  out = _min_eps_jit(params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                     jnp.float32(eps_max), jnp.float32(step_size), jnp.float32(step_rel), key,
                     model=model, iters=int(iters), criterion=criterion,
                     threshold=float(threshold), steps=int(steps), norm=norm,
                     targeted=bool(targeted), random_start=bool(random_start), loss=loss,
                     restarts=int(restarts))
  return {k: np.asarray(v) for k, v in out.items()}


# ---------------------------------------------------------------- fixed-shape batching

def pad_batch(x, size: int):
  """x with its leading axis padded to `size` by repeating the last row."""
  x = np.asarray(x)
  pad = size - x.shape[0]
  if pad < 0:
    raise ValueError(f"batch of {x.shape[0]} exceeds the batch size {size}.")
  return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x


def chunked(fn, arrays, *, batch_size: int, axis: int = 0):
  """fn over fixed-size chunks of `arrays` (leading axis N), results concatenated along `axis`.

  fn(chunk_index, *chunk_arrays) returns a pytree whose `axis` is the example axis.
  """
  n = len(arrays[0])
  outs = []
  for c, start in enumerate(range(0, n, batch_size)):
    m = min(batch_size, n - start)
    chunk = [pad_batch(a[start:start + m], batch_size) for a in arrays]
    out = jax.device_get(fn(c, *chunk))
    outs.append(jax.tree_util.tree_map(
        lambda v, m=m: np.take(np.asarray(v), np.arange(m), axis=axis), out))
  return jax.tree_util.tree_map(lambda *v: np.concatenate(v, axis=axis), *outs)


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


def chromatic_energy(delta_NHWC):
  """Per-example sum (delta - mean_c delta)^2 and sum delta^2, float64 [N] each."""
  d = np.asarray(delta_NHWC, np.float64)
  chroma = d - d.mean(axis=-1, keepdims=True)
  axes = tuple(range(1, d.ndim))
  return np.sum(chroma ** 2, axis=axes), np.sum(d ** 2, axis=axes)


def stroke_mask(images_NHWC, *, threshold: float = 30.0):
  """Colored-stroke pixels, bool [N, H, W]: the largest channel deviation from the pixel's
  channel mean exceeds `threshold` (the study's backgrounds are grey, its palette saturated)."""
  x = np.asarray(images_NHWC, np.float64)
  return np.abs(x - x.mean(-1, keepdims=True)).max(-1) > threshold


def perturbation_anatomy(delta_NHWC, mask_NHW=None) -> dict:
  """Where and in which color direction a batch of perturbations lies.

  chromatic_share: sum over the batch of the chromatic energy (deviation from the per-pixel
  channel mean) over the total energy; the rest (1 - share) is luminance (grey) energy. An
  isotropic perturbation has share 2/3 (two of the three color directions are chromatic).
  With a stroke mask, also the share of the energy on the stroke and the mean |delta| on and
  off it.
  """
  d = np.asarray(delta_NHWC, np.float64)
  chroma, total = chromatic_energy(d)
  per_example = chroma / np.maximum(total, 1e-30)
  out = {
      "mean_abs_map_HWC": np.abs(d).mean(axis=0),
      "chromatic_share": float(chroma.sum() / max(total.sum(), 1e-30)),
      "chromatic_share_median": float(np.median(per_example[total > 0])) if np.any(total > 0)
      else float("nan"),
      "isotropic_chromatic_share": 2.0 / 3.0,
      "mean_linf": float(np.abs(d).reshape(len(d), -1).max(axis=1).mean()),
      "mean_l2": float(np.sqrt(total).mean()),
      "mean_abs": float(np.abs(d).mean()),
  }
  if mask_NHW is not None:
    m = np.asarray(mask_NHW, bool)
    energy = np.sum(d ** 2, axis=-1)
    a = np.abs(d).mean(-1)
    out.update({
        "stroke_pixel_share": float(m.mean()),
        "stroke_energy_share": float(energy[m].sum() / max(energy.sum(), 1e-30)),
        "mean_abs_on_stroke": float(a[m].mean()) if m.any() else float("nan"),
        "mean_abs_off_stroke": float(a[~m].mean()) if (~m).any() else float("nan"),
    })
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


def time_programs(fns: dict, *, repeats: int) -> dict:
  """Median wall seconds of each zero-argument function (each run once first, to compile)."""
  out = {}
  for name, fn in fns.items():
    t = time.perf_counter()
    jax.block_until_ready(fn())
    out[f"{name}_first_call_s"] = time.perf_counter() - t
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      jax.block_until_ready(fn())
      times.append(time.perf_counter() - t)
    out[f"{name}_s"] = statistics.median(times)
    out[f"{name}_all_s"] = times
  return out
