"""Square attack (Andriushchenko et al. 2020), Linf, score-based: forward passes only.

Images are NHWC float32 pixels in [0, 255]; eps in pixel units. As in pgd.py, `labels` are the
true labels, or the targets when targeted=True. The attack minimizes the margin

  untargeted  z_y - max_{j != y} z_j         targeted  max_{j != t} z_j - z_t

(pgd.attack_objective with loss 'margin'); an example has succeeded once it is below 0.

Start: vertical stripes, x0 + eps * (+-1 per column and channel), clipped to [0, 255]. Each
iteration, for every example not yet successful: a random square of side
s = max(round(sqrt(p * H * W)), 1) (at most H - 1) gets a new +-eps per channel; the candidate
is kept when it lowers the margin. p follows the paper's schedule (`p_at`): p_init halved at
10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 iterations, rescaled to `queries`;
p_init 0.8 as AutoAttack's standard version runs it.
Each iteration is one forward pass of the batch (the attack never asks for a gradient);
`queries` iterations in a `lax.fori_loop`, so each example spends at most queries + 1 queries.
The reference redraws a square whose signs leave the image unchanged; this one does not.
"""

import jax
import jax.numpy as jnp

from ccmnist.attacks import pgd as pgd_lib

P_INIT = 0.8  # AutoAttack's standard version (the paper tunes it per data set).
_SCHEDULE = ((10, 2), (50, 4), (200, 8), (500, 16), (1000, 32), (2000, 64), (4000, 128),
             (6000, 256), (8000, 512))


def p_at(it, queries: int, p_init: float = P_INIT):
  """The fraction of pixels changed at iteration `it` of `queries` (works traced)."""
  t = jnp.floor(jnp.asarray(it, jnp.float32) / queries * 10_000)
  div = jnp.float32(1.0)
  for start, d in _SCHEDULE:
    div = jnp.where(t > start, jnp.float32(d), div)
  return p_init / div


def square_side(p, h: int, w: int):
  """Side of the square at fraction p of an H x W image: round(sqrt(p H W)) in [1, H - 1]."""
  s = jnp.round(jnp.sqrt(p * h * w)).astype(jnp.int32)
  return jnp.clip(s, 1, min(h, w) - 1)


def _margin(logits, labels, targeted: bool):
  return pgd_lib.attack_objective(logits, labels, loss="margin", targeted=targeted)


def square_program(params, images, labels, eps_N, key, *, model, queries: int, targeted: bool,
                   p_init: float):
  """The whole attack for one batch: adv images [N, H, W, C] (the best found), no gradient."""
  pgd_lib.TRACE_COUNTS["square"] += 1
  logit_fn = lambda x: model.apply({"params": params}, x)
  x0 = images.astype(jnp.float32)
  n, h, w, c = x0.shape
  e = pgd_lib.bcast(eps_N, x0)
  k_init, k_loop = jax.random.split(key)
  stripes = jax.random.choice(k_init, jnp.array([-1.0, 1.0]), (n, 1, w, c))
  x = jnp.clip(x0 + e * stripes, 0.0, 255.0)
  margin = _margin(logit_fn(x), labels, targeted)
  rows, cols = jnp.arange(h)[None, :, None, None], jnp.arange(w)[None, None, :, None]

  def body(i, state):
    x, margin = state
    k_h, k_w, k_s = jax.random.split(jax.random.fold_in(k_loop, i), 3)
    s = square_side(p_at(i, queries, p_init), h, w)
    top = jax.random.randint(k_h, (n, 1, 1, 1), 0, h - s + 1)
    left = jax.random.randint(k_w, (n, 1, 1, 1), 0, w - s + 1)
    inside = (rows >= top) & (rows < top + s) & (cols >= left) & (cols < left + s)
    signs = jax.random.choice(k_s, jnp.array([-1.0, 1.0]), (n, 1, 1, c))
    cand = jnp.where(inside, x0 + e * signs, x)
    cand = pgd_lib.project(cand, x0, eps_N, norm="linf")
    new_margin = _margin(logit_fn(cand), labels, targeted)
    take = (new_margin < margin) & (margin >= 0.0)  # Successful examples stop changing.
    return (jnp.where(take[:, None, None, None], cand, x), jnp.where(take, new_margin, margin))

  x, _ = jax.lax.fori_loop(0, queries, body, (x, margin))
  return jax.lax.stop_gradient(x)


_square_jit = jax.jit(square_program, static_argnames=("model", "queries", "targeted",
                                                       "p_init"))


def square(model, params, images, labels, *, eps, queries, key, targeted=False,
           p_init=P_INIT):
  """Square attack, Linf; returns adversarial images, float32 pixels [N, H, W, C].

  images: NHWC pixels in [0, 255]. labels: true labels, or targets when targeted=True.
  eps: a scalar or [N] (pixel units). queries: iterations (forward passes of the batch).
  """
  if int(queries) < 0 or not 0.0 < float(p_init) <= 1.0:
    raise ValueError(f"queries must be >= 0 and p_init in (0, 1]; got {queries}, {p_init}.")
  n = pgd_lib.check_inputs(images, labels, eps=eps, norm="linf", loss="margin")
  if images.shape[1] < 2 or images.shape[2] < 2:
    raise ValueError(f"images must be at least 2 x 2 pixels; got {images.shape}.")
  return _square_jit(params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                     pgd_lib.per_example(eps, n), key, model=model,
                     queries=int(queries), targeted=bool(targeted), p_init=float(p_init))
