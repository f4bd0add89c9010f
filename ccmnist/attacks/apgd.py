"""APGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"), Linf, in pixel space.

Images are NHWC float32 pixels in [0, 255]; eps is in pixel units (the study's 12.75). The
attack MAXIMIZES a per-example loss (the paper's convention, the opposite sign of pgd.py's
objective):

  'ce'   untargeted  CE(z, y);            targeted  -CE(z, t)
  'dlr'  untargeted  -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)
         targeted    -(z_s - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)

with z sorted so z_pi1 >= z_pi2 >= ...; y the true label, t the target, s the source (the
class moved away from: the true label where given, else the clean prediction's largest
non-target class). As in pgd.py, `labels` are the true labels, or the targets when
targeted=True.

The step: a sign-gradient step of size eta from x_k, projected (z), then momentum
x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1})), alpha 0.75 (1 at the first
step). eta starts at 2 eps. Checkpoints at w_0 = 0, w_1 = 0.22 N, w_{j+1} = w_j +
max(w_j - w_{j-1} - 0.03 N, 0.06 N) (N = steps): at each, an example's eta is halved and it
restarts from its best point when (1) its loss rose in at most 75% of the steps since the last
checkpoint, or (2) eta was not halved at the last checkpoint and its best loss did not improve
since. Each restart begins at a uniform point of the ball's surface direction (u / max|u|,
u ~ U[-1, 1], scaled by eps), as the reference does.

Returns, per example, the first point found that succeeds (misclassified, or the target class
when targeted), else the point of highest loss; across restarts the best such point.

One compiled program per (model, settings, shapes): steps and restarts are `lax.fori_loop`s,
each step one backward pass for the batch (the loss summed over examples). eps is per example
[N], so the program vmaps over epsilons (see `sweep`).
"""

import jax
import jax.numpy as jnp
import optax

from ccmnist.attacks import pgd as pgd_lib

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75  # alpha of the paper.
RHO = 0.75  # Condition (1): the share of loss increases under which eta is halved.
_DLR_TINY = 1e-12


# ---------------------------------------------------------------- losses

def _sorted_desc(logits):
  return -jnp.sort(-logits, axis=-1)


def _take(logits, idx):
  return jnp.take_along_axis(logits, idx[:, None], axis=-1)[:, 0]


def dlr_loss(logits, labels):
  """Untargeted DLR per example [N]: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)."""
  zs = _sorted_desc(logits)
  margin = _take(logits, labels) - pgd_lib.largest_other(logits, labels)
  return -margin / (zs[:, 0] - zs[:, 2] + _DLR_TINY)


def dlr_targeted_loss(logits, targets, sources):
  """Targeted DLR per example [N]: -(z_s - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)."""
  zs = _sorted_desc(logits)
  diff = _take(logits, sources) - _take(logits, targets)
  return -diff / (zs[:, 0] - 0.5 * (zs[:, 2] + zs[:, 3]) + _DLR_TINY)


def apgd_loss(logits, labels, sources, *, loss: str, targeted: bool):
  """The per-example loss [N] APGD maximizes (see the module docstring)."""
  if loss == "ce":
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return -ce if targeted else ce
  if loss == "dlr":
    return dlr_targeted_loss(logits, labels, sources) if targeted else dlr_loss(logits, labels)
  raise ValueError(f"Unknown APGD loss {loss!r}; use one of {LOSSES}.")


def default_sources(logits, targets):
  """The class targeted DLR moves away from when no true label is given: the largest logit
  other than the target's."""
  masked = jnp.where(jax.nn.one_hot(targets, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  return jnp.argmax(masked, axis=-1).astype(jnp.int32)


def _succeeds(logits, labels, *, targeted: bool):
  pred = jnp.argmax(logits, -1)
  return pred == labels if targeted else pred != labels


# ---------------------------------------------------------------- the schedule

def schedule(steps: int) -> dict:
  """The checkpoint schedule of `steps` iterations: first interval (0.22 N), its decrease per
  checkpoint (0.03 N) and its floor (0.06 N), each at least 1, as the reference rounds them."""
  return {"first": max(int(0.22 * steps), 1), "decrease": max(int(0.03 * steps), 1),
          "min": max(int(0.06 * steps), 1)}


def checkpoints(steps: int) -> list:
  """The iterations (1-based counts of steps done) at which the step size is checked."""
  s, out, w = schedule(steps), [], 0
  k = s["first"]
  while w + k <= steps:
    w += k
    out.append(w)
    k = max(k - s["decrease"], s["min"])
  return out


# ---------------------------------------------------------------- one run

def _linf_project(x, x0, eps_N):
  return pgd_lib.project(x, x0, eps_N, norm="linf")


def apgd_run(x_start, x0, labels, sources, eps_N, *, logit_fn, steps: int, loss: str,
             targeted: bool):
  """One APGD run from x_start: (adversarial images, success [N] bool)."""
  n = x0.shape[0]
  bc = lambda v: pgd_lib.bcast(v, x0)
  sch = schedule(steps)

  def loss_grad(x):
    def total(xx):
      logits = logit_fn(xx)
      per = apgd_loss(logits, labels, sources, loss=loss, targeted=targeted)
      return jnp.sum(per), (per, logits)
    (_, (per, logits)), g = jax.value_and_grad(total, has_aux=True)(x)
    return per, logits, g

  loss0, logits0, g0 = loss_grad(x_start)
  ok0 = _succeeds(logits0, labels, targeted=targeted)
  hist = jnp.zeros((steps + 1, n), jnp.float32).at[0].set(loss0)
  init = dict(
      x=x_start, x_old=x_start, g=g0, x_best=x_start, loss_best=loss0, g_best=g0,
      x_adv=x_start, ok=ok0, step=2.0 * eps_N, hist=hist, counter=jnp.int32(0),
      k=jnp.int32(sch["first"]), best_last=loss0, reduced_last=jnp.ones((n,), bool))

  def body(i, s):
    a = jnp.where(i > 0, MOMENTUM, 1.0)
    z = _linf_project(s["x"] + bc(s["step"]) * jnp.sign(s["g"]), x0, eps_N)
    x = _linf_project(s["x"] + a * (z - s["x"]) + (1.0 - a) * (s["x"] - s["x_old"]), x0, eps_N)
    per, logits, g = loss_grad(x)
    ok = _succeeds(logits, labels, targeted=targeted)
    x_adv = jnp.where(bc(ok & ~s["ok"]), x, s["x_adv"])  # The first successful point.
    better = per > s["loss_best"]
    x_best = jnp.where(bc(better), x, s["x_best"])
    g_best = jnp.where(bc(better), g, s["g_best"])
    loss_best = jnp.where(better, per, s["loss_best"])
    hist = s["hist"].at[i + 1].set(per)
    counter = s["counter"] + 1

    # Checkpoint: conditions (1) and (2) over the last k steps.
    at_ckpt = counter == s["k"]
    j = jnp.arange(steps + 1)
    window = (j > i + 1 - s["k"]) & (j <= i + 1)
    rises = jnp.concatenate([jnp.zeros((1, n), bool), hist[1:] > hist[:-1]], axis=0)
    n_rises = jnp.sum(rises & window[:, None], axis=0)
    osc = n_rises <= RHO * s["k"].astype(jnp.float32)
    no_impr = ~s["reduced_last"] & (s["best_last"] >= loss_best)
    reduce = at_ckpt & (osc | no_impr)
    step = jnp.where(reduce, 0.5 * s["step"], s["step"])
    x = jnp.where(bc(reduce), x_best, x)
    g = jnp.where(bc(reduce), g_best, g)
    return dict(
        x=x, x_old=s["x"], g=g,
        x_best=x_best, loss_best=loss_best, g_best=g_best, x_adv=x_adv, ok=s["ok"] | ok,
        step=step, hist=hist, counter=jnp.where(at_ckpt, 0, counter),
        k=jnp.where(at_ckpt, jnp.maximum(s["k"] - sch["decrease"], sch["min"]), s["k"]),
        best_last=jnp.where(at_ckpt, loss_best, s["best_last"]),
        reduced_last=jnp.where(at_ckpt, osc | no_impr, s["reduced_last"]))

  s = jax.lax.fori_loop(0, steps, body, init)
  return jnp.where(bc(s["ok"]), s["x_adv"], s["x_best"]), s["ok"]


def surface_start(key, x0, eps_N):
  """The reference's start: x0 + eps u / max|u|, u ~ U[-1, 1] per pixel, clipped to [0, 255]."""
  u = jax.random.uniform(key, x0.shape, jnp.float32, -1.0, 1.0)
  u = u / jnp.max(jnp.abs(u), axis=tuple(range(1, x0.ndim)), keepdims=True)
  return jnp.clip(x0 + pgd_lib.bcast(eps_N, x0) * u, 0.0, 255.0)


# ---------------------------------------------------------------- the compiled program

def apgd_program(params, images, labels, sources, eps_N, key, *, model, steps: int, loss: str,
                 targeted: bool, restarts: int):
  """The whole attack (restarts x steps) for one batch; adv images [N, H, W, C], no gradient.

  Across restarts each example keeps a successful point first, else the highest loss.
  sources [N]: the classes targeted DLR moves away from (ignored otherwise).
  """
  pgd_lib.TRACE_COUNTS["apgd"] += 1
  logit_fn = lambda x: model.apply({"params": params}, x)
  x0 = images.astype(jnp.float32)
  n = x0.shape[0]
  bc = lambda v: pgd_lib.bcast(v, x0)

  def one_restart(r, best):
    best_x, best_ok, best_loss = best
    start = surface_start(jax.random.fold_in(key, r), x0, eps_N)
    x, _ = apgd_run(start, x0, labels, sources, eps_N, logit_fn=logit_fn, steps=steps,
                    loss=loss, targeted=targeted)
    logits = logit_fn(x)
    ok = _succeeds(logits, labels, targeted=targeted)
    val = apgd_loss(logits, labels, sources, loss=loss, targeted=targeted)
    better = (ok & ~best_ok) | ((ok == best_ok) & (val > best_loss))
    return (jnp.where(bc(better), x, best_x), best_ok | ok, jnp.where(better, val, best_loss))

  init = (x0, jnp.zeros((n,), bool), jnp.full((n,), -jnp.inf))
  x = jax.lax.fori_loop(0, restarts, one_restart, init)[0]
  return jax.lax.stop_gradient(x)


_apgd_jit = jax.jit(apgd_program, static_argnames=(
    "model", "steps", "loss", "targeted", "restarts"))


def check_settings(*, loss: str, steps: int, restarts: int) -> None:
  """Raises ValueError on an unknown loss, steps < 0 or restarts < 1."""
  if loss not in LOSSES:
    raise ValueError(f"Unknown APGD loss {loss!r}; use one of {LOSSES}.")
  if steps < 0 or restarts < 1:
    raise ValueError(f"steps must be >= 0 and restarts >= 1; got {steps}, {restarts}.")


def _sources(model, params, images, labels, sources, *, targeted: bool, loss: str):
  if not (targeted and loss == "dlr"):
    return jnp.zeros_like(labels)
  if sources is not None:
    return jnp.asarray(sources, jnp.int32)
  return default_sources(model.apply({"params": params}, images), labels)


def apgd(model, params, images, labels, *, eps, steps=100, loss="ce", targeted=False,
         restarts=1, key, sources=None):
  """APGD, Linf; returns adversarial images, float32 pixels [N, H, W, C].

  images: NHWC pixels in [0, 255]. labels: the true labels, or the targets when targeted=True.
  eps: a scalar or one per example [N], pixel units. loss: 'ce' or 'dlr'. sources: for targeted
  DLR, the true labels [N] (default: the clean prediction's largest non-target class).
  """
  check_settings(loss=loss, steps=int(steps), restarts=int(restarts))
  n = pgd_lib.check_inputs(images, labels, eps=eps, norm="linf", loss="ce")
  x = jnp.asarray(images, jnp.float32)
  y = jnp.asarray(labels, jnp.int32)
  src = _sources(model, params, x, y, sources, targeted=bool(targeted), loss=loss)
  return _apgd_jit(params, x, y, src, pgd_lib.per_example(eps, n), key, model=model,
                   steps=int(steps), loss=loss, targeted=bool(targeted),
                   restarts=int(restarts))


def sweep_program(params, images, labels, sources, eps_E, key, *, model, steps: int, loss: str,
                  targeted: bool, restarts: int):
  """APGD at every epsilon [E] in one program (vmapped); adv images [E, N, H, W, C]."""
  n = images.shape[0]
  at = lambda e: apgd_program(params, images, labels, sources, jnp.broadcast_to(e, (n,)), key,
                              model=model, steps=steps, loss=loss, targeted=targeted,
                              restarts=restarts)
  return jax.vmap(at)(eps_E)


_sweep_jit = jax.jit(sweep_program, static_argnames=(
    "model", "steps", "loss", "targeted", "restarts"))


def sweep(model, params, images, labels, *, epsilons, steps=100, loss="ce", targeted=False,
          restarts=1, key, sources=None):
  """`apgd` at every epsilon of `epsilons` [E], same key; adv images [E, N, H, W, C]."""
  check_settings(loss=loss, steps=int(steps), restarts=int(restarts))
  pgd_lib.check_inputs(images, labels, eps=0.0, norm="linf", loss="ce")
  eps_E = jnp.asarray(epsilons, jnp.float32).reshape(-1)
  if bool(jnp.any(eps_E < 0)):
    raise ValueError(f"epsilons must be >= 0; got {epsilons}.")
  x = jnp.asarray(images, jnp.float32)
  y = jnp.asarray(labels, jnp.int32)
  src = _sources(model, params, x, y, sources, targeted=bool(targeted), loss=loss)
  return _sweep_jit(params, x, y, src, eps_E, key, model=model, steps=int(steps), loss=loss,
                    targeted=bool(targeted), restarts=int(restarts))
