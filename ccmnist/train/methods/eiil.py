"""EIIL: infer the environments that a reference model violates IRM on most, then train IRMv1.

Creager, Jacobsen and Zemel 2021, "Environment Inference for Invariant Learning" (ICML 2021).

Knows nothing about the bias. Needs a reference run: ERM on the same data, trained by the
caller with the same seeds (settings.reference, its workdir, which the loop loads:
train/reference.py; replica r reads the reference replica with its seed, as JTT). The paper's
reference is a fully trained ERM model (the authors' code trains it for as many steps as the
invariant learner, with the IRM code's L2), so the benchmark gives EIIL the cell's own ERM run
(the protocol's optimizer and epochs), not JTT's early-stopped identification run.

The environment-inference (EI) step, once per replica before training (init_extra): with the
reference model's train logits z_i fixed, soft assignments q_i = sigmoid(u_i) = q(e=1 | x_i)
maximize the IRMv1 penalty of the two soft environments,

  mean_e (d/dw R_e(w) at w = 1)^2,  R_1(w) = 1/N sum_i q_i CE(w z_i, y_i), R_2 with 1 - q_i,

by Adam on u (init N(0, 1)) for ei_steps steps at rate ei_lr; then e_i = 1 where q_i > 0.5,
kept in extra['envs'] [K, N]. Training is IRMv1 on those environments (irm.objective): mean risk
of the environments + pw * mean penalty, pw = lam from config.loss.warmup_epochs on and 1
before, the loss divided by pw when pw > 1. lam is that penalty weight.

Settings: reference, ei_steps (10000), ei_lr (0.001), as the authors' code (`split_data_opt`),
which also scales each environment's risk by 1/N rather than by its soft size; the per-example
scale gradient d/dw CE(w z_i, y_i) is computed once, so the EI step costs O(N) per step.
u's init is drawn from the replica's seed, so grid points of one seed share environments.
Not sliceable (IRMv1's environment means are over the whole batch).
"""

import functools

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ccmnist.train import losses
from ccmnist.train.methods import base
from ccmnist.train.methods import irm
from ccmnist.util import batches

NUM_ENVS = 2
DEFAULTS = {"reference": "", "ei_steps": 10_000, "ei_lr": 0.001}


def scale_gradients(logits, labels):
  """[N]: d/dw CE(w * logits_i, y_i) at w = 1, each example's share of the IRMv1 gradient."""
  ce = lambda w: losses.cross_entropy(logits=w * logits, labels=labels, reduction="none")
  return jax.jvp(ce, (jnp.ones((), logits.dtype),), (jnp.ones((), logits.dtype),))[1]


def soft_penalty(u, grads):
  """The EI objective: the mean over the two soft environments (q = sigmoid(u), 1 - q) of the
  squared scale gradient of their 1/N-scaled risks."""
  q = jax.nn.sigmoid(u)
  return 0.5 * (jnp.square(jnp.mean(q * grads)) + jnp.square(jnp.mean((1.0 - q) * grads)))


@functools.partial(jax.jit, static_argnames=("steps",))
def infer_environments(logits, labels, *, steps: int, lr: float, key):
  """bool [N]: environment 1 (q > 0.5) of each example after `steps` Adam steps on the soft
  assignments that maximize the IRMv1 penalty of the fixed `logits` [N, C]."""
  grads = scale_gradients(logits, labels)
  u = jax.random.normal(key, grads.shape, grads.dtype)
  opt = optax.adam(lr)
  ascent = jax.grad(lambda u: -soft_penalty(u, grads))

  def body(_, carry):
    u, state = carry
    updates, state = opt.update(ascent(u), state)
    return optax.apply_updates(u, updates), state
  u, _ = jax.lax.fori_loop(0, steps, body, (u, opt.init(u)))
  return jax.nn.sigmoid(u) > 0.5


def reference_logits(config, train_split, reps, reference) -> np.ndarray:
  """float32 [K, N, C]: the train logits of each replica's reference replica (reference:
  train/reference.py's Reference)."""
  idx = reference.replicas_of(reps)
  model, params = reference.load()
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x.astype(jnp.float32)))
  out = {}
  for i in sorted(set(idx)):
    p = jax.tree_util.tree_map(lambda x, i=i: x[i], params)
    out[i] = batches.map_batches(lambda x, p=p: forward(p, jnp.asarray(x)),
                                 (np.asarray(train_split["images"]),),
                                 batch_size=config.train.eval_batch_size)
  return np.stack([out[i] for i in idx])


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  """envs [K, N] int32: the inferred environment of every train example, per replica."""
  given = settings
  seeds = sorted({r["seed"] for r in reps})  # Grid points of one seed share its environments.
  logits = reference_logits(config, train_split, [{"seed": s} for s in seeds], reference)
  keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 3) for s in seeds])
  infer = functools.partial(infer_environments, steps=int(given["ei_steps"]),
                            lr=float(given["ei_lr"]))
  envs = jax.vmap(lambda z, k: infer(z, jnp.asarray(train_split["labels"]), key=k))(
      jnp.asarray(logits), keys)
  envs = np.asarray(envs, np.int32)
  wrong = logits.argmax(-1) != np.asarray(train_split["labels"])[None]
  logging.info("EIIL environments of seeds %s: share in environment 0 %s, reference errors "
               "there %s and in environment 1 %s", seeds, np.round(1 - envs.mean(1), 4).tolist(),
               *[[round(float(w[e == v].mean()), 4) if (e == v).any() else None
                  for w, e in zip(wrong, envs)] for v in (0, 1)])
  return {"envs": envs[[seeds.index(r["seed"]) for r in reps]]}


def check(config, *, settings) -> None:
  del config  # The reference itself may not be trained yet: init_extra reads it.
  given = settings
  if int(given["ei_steps"]) < 1 or not float(given["ei_lr"]) > 0:
    raise ValueError(f"config.loss.settings.ei_steps={given['ei_steps']} and ei_lr="
                     f"{given['ei_lr']}: the environment inference needs >= 1 step and a rate "
                     "> 0 (the authors': 10000 and 0.001).")


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del settings
  return irm.objective(model=model, params=params, batch=batch, lam=lam, extra=extra, step=step,
                       warmup_steps=warmup_steps, n_envs=NUM_ENVS)


METHOD = base.Method(
    name="eiil", loss=loss,
    summary="IRMv1 on the two environments that maximize a reference ERM model's IRM penalty",
    paper="Creager et al. 2021, 'Environment Inference for Invariant Learning'",
    knows="nothing about the bias (environments inferred from a reference ERM run)",
    lam_means=irm.METHOD.lam_means, batch_keys=irm.METHOD.batch_keys, sliceable=False,
    defaults=DEFAULTS, init_extra=init_extra, check=check, reference="reference",
    inferred_split="envs",
    benchmark=base.Benchmark(title="EIIL", grid=irm.IRM_GRID, quick_grid=irm.IRM_QUICK_GRID,
                             warmup_epochs=1, warmup_fraction=irm.IRM_WARMUP_FRACTION,
                             needs="erm"))
