"""FGSM and PGD in pixel space: Linf and L2 balls, targeted and untargeted, CE or margin loss.

Images are NHWC float32 pixels in [0, 255]; epsilons and step sizes are in pixel units (the
study's 12.75 = 0.05 * 255). Every attack minimizes a per-example *attack objective*:

  targeted:   CE(logits, target)              or  max_{j != t} z_j - z_t       (margin)
  untargeted: -CE(logits, label)              or  z_y - max_{j != y} z_j       (margin)

so a step is always x - step * direction(grad). With norm='linf', eps 12.75, step 1.5, 30
steps, random start, targeted CE and one restart this is exactly the study's `targeted_pgd`
(Task 5): start x0 + U[-eps, eps] clipped to [0, 255]; each step x - alpha * sign(grad CE),
clip to [x0 - eps, x0 + eps], clip to [0, 255]; return the last iterate.

The attack is one compiled program: restarts and steps are `lax.fori_loop`s, each step one
backward pass for the whole batch (the objective is summed over examples, so each example gets
its own gradient). Programs are jitted with the model and the settings as static arguments, so
each (model, settings, shapes) compiles once.

Two ways in, one program: `pgd(...)` / `fgsm(...)` take every setting as an argument;
`Attack` (built once, e.g. `from_config(cfg.pgd)`) binds the budget, the step rule and the
settings, and is then only called: `attack(model, params, images, labels, key)`.
"""

import collections
import dataclasses

import jax
import jax.numpy as jnp
import optax

NORMS = ("linf", "l2")
LOSSES = ("ce", "margin")
PIXEL_MIN, PIXEL_MAX = 0.0, 255.0
_TINY = 1e-12

# Times each attack program was traced (compiled); tests check that a shape compiles once.
TRACE_COUNTS = collections.Counter()


# ---------------------------------------------------------------- pure pieces

def per_example(v, n: int):
  """A scalar or [N] value as float32 [N]."""
  return jnp.broadcast_to(jnp.asarray(v, jnp.float32), (n,))


def bcast(v_N, x_NHWC):
  """[N] per-example values shaped to broadcast against a batch x_NHWC."""
  return v_N.reshape((-1,) + (1,) * (x_NHWC.ndim - 1))


def _l2_norm(x_NHWC):
  return jnp.sqrt(jnp.sum(jnp.square(x_NHWC), axis=tuple(range(1, x_NHWC.ndim))))


def project(x, x0, eps_N, *, norm: str):
  """Projects x onto the eps-ball around x0 (per-example eps), then onto [0, 255].

  For L2 the ball projection rescales delta; clipping to the box afterwards moves every pixel
  towards x0 (which lies in the box), so the result stays in both sets.
  """
  delta = x - x0
  if norm == "linf":
    e = bcast(eps_N, x)
    delta = jnp.clip(delta, -e, e)
  elif norm == "l2":
    n = _l2_norm(delta)
    delta = delta * bcast(jnp.minimum(1.0, eps_N / jnp.maximum(n, _TINY)), x)
  else:
    raise ValueError(f"Unknown norm {norm!r}; use one of {NORMS}.")
  return jnp.clip(x0 + delta, PIXEL_MIN, PIXEL_MAX)


def ascent_direction(g, *, norm: str):
  """The unit-norm steepest direction of g: sign(g) for Linf, g / ||g||_2 for L2."""
  if norm == "linf":
    return jnp.sign(g)
  if norm == "l2":
    return g / bcast(jnp.maximum(_l2_norm(g), _TINY), g)
  raise ValueError(f"Unknown norm {norm!r}; use one of {NORMS}.")


def uniform_start(key, x0, eps_N, *, norm: str):
  """A uniform point of the eps-ball around x0, clipped to [0, 255].

  Linf: x0 + U[-eps, eps] per pixel (the study's). L2: a Gaussian direction, normalized, at
  radius eps * U^(1/d), d the number of pixels of one image, which is uniform in the ball.
  """
  if norm == "linf":
    u = jax.random.uniform(key, x0.shape, jnp.float32, -1.0, 1.0)
    delta = u * bcast(eps_N, x0)
  elif norm == "l2":
    k_dir, k_rad = jax.random.split(key)
    g = jax.random.normal(k_dir, x0.shape, jnp.float32)
    d = x0[0].size
    radius = eps_N * jax.random.uniform(k_rad, (x0.shape[0],), jnp.float32) ** (1.0 / d)
    delta = g / bcast(jnp.maximum(_l2_norm(g), _TINY), g) * bcast(radius, g)
  else:
    raise ValueError(f"Unknown norm {norm!r}; use one of {NORMS}.")
  return jnp.clip(x0 + delta, PIXEL_MIN, PIXEL_MAX)


def largest_other(logits, labels):
  """The largest logit other than the label's, per example."""
  masked = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  return jnp.max(masked, axis=-1)


def attack_objective(logits, labels, *, loss: str, targeted: bool):
  """Per-example objective [N] the attacker minimizes (see the module docstring)."""
  if loss == "ce":
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return ce if targeted else -ce
  if loss == "margin":
    z_label = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    margin = z_label - largest_other(logits, labels)
    return -margin if targeted else margin
  raise ValueError(f"Unknown attack loss {loss!r}; use one of {LOSSES}.")


def targeted_success(logits, targets, *, threshold: float = 0.9):
  """(target probability > threshold, argmax == target), both bool [N]. The study's is the first."""
  p = jax.nn.softmax(logits, axis=-1)
  p_target = jnp.take_along_axis(p, targets[:, None], axis=-1)[:, 0]
  return p_target > threshold, jnp.argmax(logits, -1) == targets


def untargeted_success(logits, labels):
  """Misclassified, bool [N]."""
  return jnp.argmax(logits, -1) != labels


def attack_success(logits, labels, *, targeted: bool, threshold: float = 0.9) -> dict:
  """{'prob': ..., 'argmax': ...} bool [N]. Untargeted: both are 'misclassified'."""
  if targeted:
    by_prob, by_argmax = targeted_success(logits, labels, threshold=threshold)
    return {"prob": by_prob, "argmax": by_argmax}
  miss = untargeted_success(logits, labels)
  return {"prob": miss, "argmax": miss}


def pgd_step(x, x0, labels, eps_N, step_N, *, logit_fn, norm: str, loss: str, targeted: bool):
  """One PGD step for the whole batch: one backward pass, a step down the objective, projection."""
  f = lambda xx: jnp.sum(attack_objective(logit_fn(xx), labels, loss=loss, targeted=targeted))
  g = jax.grad(f)(x)
  x = x - bcast(step_N, x) * ascent_direction(g, norm=norm)
  return project(x, x0, eps_N, norm=norm)


def pgd_loop(x, x0, labels, eps_N, step_N, *, steps: int, **step_kw):
  """`steps` PGD steps from x under lax.fori_loop; returns the last iterate."""
  body = lambda _, xx: pgd_step(xx, x0, labels, eps_N, step_N, **step_kw)
  return jax.lax.fori_loop(0, steps, body, x)


# ---------------------------------------------------------------- the compiled programs

def pgd_program(params, images, labels, eps_N, step_N, key, *, model, steps: int, norm: str,
                targeted: bool, random_start: bool, loss: str, restarts: int):
  """The whole attack (restarts x steps) for one batch; adv images [N, H, W, C], no gradient.

  Across restarts each example keeps its best result: a successful one first (argmax ==
  target, or misclassified when untargeted), then the lowest objective.
  """
  TRACE_COUNTS["pgd"] += 1
  logit_fn = lambda x: model.apply({"params": params}, x)
  kw = dict(logit_fn=logit_fn, norm=norm, loss=loss, targeted=targeted)
  x0 = images.astype(jnp.float32)

  def one_restart(r, best):
    best_x, best_ok, best_obj = best
    start = (uniform_start(jax.random.fold_in(key, r), x0, eps_N, norm=norm)
             if random_start else x0)
    x = pgd_loop(start, x0, labels, eps_N, step_N, steps=steps, **kw)
    logits = logit_fn(x)
    ok = attack_success(logits, labels, targeted=targeted)["argmax"]
    obj = attack_objective(logits, labels, loss=loss, targeted=targeted)
    better = (ok & ~best_ok) | ((ok == best_ok) & (obj < best_obj))
    return (jnp.where(bcast(better, x), x, best_x), best_ok | ok,
            jnp.where(better, obj, best_obj))

  if restarts == 1:
    x = one_restart(0, (x0, jnp.zeros(x0.shape[0], bool),
                        jnp.full(x0.shape[0], jnp.inf)))[0]
  else:
    init = (x0, jnp.zeros(x0.shape[0], bool), jnp.full(x0.shape[0], jnp.inf))
    x = jax.lax.fori_loop(0, restarts, one_restart, init)[0]
  return jax.lax.stop_gradient(x)


_pgd_jit = jax.jit(pgd_program, static_argnames=(
    "model", "steps", "norm", "targeted", "random_start", "loss", "restarts"))


def fgsm_program(params, images, labels, eps_N, *, model, norm: str, targeted: bool, loss: str):
  """One full-eps step from the clean image (no random start), projected to [0, 255]."""
  TRACE_COUNTS["fgsm"] += 1
  logit_fn = lambda x: model.apply({"params": params}, x)
  x0 = images.astype(jnp.float32)
  x = pgd_step(x0, x0, labels, eps_N, eps_N, logit_fn=logit_fn, norm=norm, loss=loss,
               targeted=targeted)
  return jax.lax.stop_gradient(x)


_fgsm_jit = jax.jit(fgsm_program, static_argnames=("model", "norm", "targeted", "loss"))


# ---------------------------------------------------------------- checks

def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_settings(*, norm: str, loss: str, steps: int = 1, restarts: int = 1) -> None:
  """Raises ValueError on an unknown norm or loss, steps < 0 or restarts < 1."""
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r}; use one of {NORMS}.")
  if loss not in LOSSES:
    raise ValueError(f"Unknown attack loss {loss!r}; use one of {LOSSES}.")
  if steps < 0 or restarts < 1:
    raise ValueError(f"steps must be >= 0 and restarts >= 1; got {steps}, {restarts}.")


def check_inputs(images, labels, *, eps, norm: str, loss: str, steps: int = 1,
                 restarts: int = 1) -> int:
  """Raises ValueError on bad attack inputs; returns the batch size."""
  check_settings(norm=norm, loss=loss, steps=steps, restarts=restarts)
  if images.ndim != 4:
    raise ValueError(f"images must be NHWC [N, H, W, C]; got shape {images.shape}.")
  n = images.shape[0]
  if labels.shape != (n,):
    raise ValueError(f"labels must have shape ({n},) to match images; got {labels.shape}.")
  eps_arr = jnp.asarray(eps)
  if eps_arr.ndim not in (0, 1) or (eps_arr.ndim == 1 and eps_arr.shape[0] != n):
    raise ValueError(f"eps must be a scalar or one per example ({n},); got {eps_arr.shape}.")
  if _is_concrete(eps_arr) and bool(jnp.any(eps_arr < 0)):
    raise ValueError("eps must be >= 0 (pixel units, e.g. 12.75 = 0.05 * 255).")
  return n


# ---------------------------------------------------------------- public API

def _run_pgd(model, params, images, labels, eps, step_size, key, **settings):
  """pgd_program on checked inputs, eps and step_size made per-example [N]."""
  n = check_inputs(images, labels, eps=eps, norm=settings["norm"], loss=settings["loss"],
                   steps=settings["steps"], restarts=settings["restarts"])
  return _pgd_jit(params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                  per_example(eps, n), per_example(step_size, n), key, model=model,
                  **settings)


def pgd(model, params, images, labels, *, eps, step_size, steps, norm="linf", targeted=False,
        random_start=True, loss="ce", restarts=1, key):
  """Projected gradient descent; returns adversarial images, float32 pixels [N, H, W, C].

  images: NHWC pixels in [0, 255] (uint8 or float). labels: the true labels, or the targets
  when targeted=True. eps and step_size: scalars or one per example [N], pixel units.
  key: a jax.random key for the random starts (unused without random start and restarts).
  """
  return _run_pgd(model, params, images, labels, eps, step_size, key, steps=int(steps),
                  norm=norm, targeted=bool(targeted), random_start=bool(random_start),
                  loss=loss, restarts=int(restarts))


def fgsm(model, params, images, labels, *, eps, norm="linf", targeted=False, loss="ce"):
  """Fast gradient (sign) method: one step of size eps; arguments as in `pgd`."""
  n = check_inputs(images, labels, eps=eps, norm=norm, loss=loss)
  return _fgsm_jit(params, jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32),
                   per_example(eps, n), model=model, norm=norm, targeted=bool(targeted),
                   loss=loss)


@dataclasses.dataclass(frozen=True)
class Attack:
  """PGD with its budget, step rule and settings bound once; then only called.

  attack(model, params, images, labels, key) attacks at `eps`; a sweep or a bisection passes
  its own per-example eps. The step is `step_size`, or `step_size_rel * eps` when
  step_size_rel > 0, so it scales with every epsilon tried. Frozen and hashable: the sweep and
  bisection programs take it as a static argument, one compile per attack and shape.
  """
  eps: float
  step_size: float
  steps: int
  norm: str = "linf"
  targeted: bool = False
  random_start: bool = True
  loss: str = "ce"
  restarts: int = 1
  step_size_rel: float = 0.0

  def __post_init__(self):
    check_settings(norm=self.norm, loss=self.loss, steps=self.steps, restarts=self.restarts)
    if min(self.eps, self.step_size, self.step_size_rel) < 0:
      raise ValueError(f"eps, step_size and step_size_rel must be >= 0; got {self.eps}, "
                       f"{self.step_size}, {self.step_size_rel}.")

  @property
  def settings(self) -> dict:
    """pgd_program's static settings."""
    return dict(steps=int(self.steps), norm=self.norm, targeted=bool(self.targeted),
                random_start=bool(self.random_start), loss=self.loss,
                restarts=int(self.restarts))

  def step_for(self, eps):
    """The step size at eps (any shape, float32), inside a program or out."""
    eps = jnp.asarray(eps, jnp.float32)
    if self.step_size_rel > 0:
      return self.step_size_rel * eps
    return jnp.full_like(eps, self.step_size)

  def __call__(self, model, params, images, labels, key, *, eps=None):
    """Adversarial images [N, H, W, C] at self.eps, or at `eps` (a scalar or [N])."""
    eps = self.eps if eps is None else eps
    return _run_pgd(model, params, images, labels, eps, self.step_for(eps), key,
                    **self.settings)


def from_config(cfg) -> Attack:
  """The Attack of a config's `pgd` block: its keys are Attack's keyword arguments."""
  kw = dict(cfg.items())
  unknown = sorted(set(kw) - {f.name for f in dataclasses.fields(Attack)})
  if unknown:
    raise ValueError(f"Unknown attack settings {unknown}; known: "
                     f"{[f.name for f in dataclasses.fields(Attack)]}.")
  return Attack(**kw)
