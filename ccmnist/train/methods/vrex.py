"""V-REx: the mean risk over environments plus beta times their variance.

Krueger, Caballero, Jacobsen, Zhang, Binas, Zhang, Le Priol and Courville 2021,
"Out-of-Distribution Generalization via Risk Extrapolation (REx)" (ICML), V-REx.

Knows: environments, the same as IRM's (irm.py: groups.assign_envs of the train split, seeded
from config.data.seed, kept in extra['envs']).

  loss = mean_e R_e + beta * Var_e(R_e), divided by beta when beta > 1,
R_e the mean CE of the batch's rows of environment e (only the environments the batch holds
count), Var the population variance (mean squared deviation, as DomainBed's VREx), beta = lam
from step config.loss.warmup_epochs x steps_per_epoch on, 1 before: the schedule of the authors'
colored-MNIST code (built on IRM's, `penalty_anneal_iters`), which also divides the loss by beta
when beta > 1. lam is beta after warmup. With two environments their code's (R_1 + R_2) +
w (R_1 - R_2)^2 is 2 (mean + 2 w Var): their penalty weight w is beta / 2 here.

Settings: `env_conflict_scales` (irm.py). Not sliceable: the variance is over the whole batch.

The benchmark runs their code's magnitudes: its default weight w = 1e4 (`main.py`, the command
its README gives for V-REx) is beta = 2e4 here, so VREX_GRID is 2 x (1e2, 1e3, 1e4); and its
switch-on point, penalty_anneal_iters=100 of steps=501, as a share of the run's epochs
(VREX_WARMUP_FRACTION; Benchmark.warmup_of).
"""

import jax.numpy as jnp

from ccmnist.train.methods import base
from ccmnist.train.methods import irm


def risk_variance(risks, present):
  """The population variance of risks [E] over the entries where present."""
  mean = irm.present_mean(risks, present)
  return irm.present_mean(jnp.square(risks - mean), present)


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  logits, ce, envs = irm.batch_terms(model, params, batch, extra)
  risks, present = irm.env_risks(ce, envs, irm.num_envs(settings))
  penalty = risk_variance(risks, present)
  weight, divisor = irm.penalty_weight(lam, step, warmup_steps)
  total = (irm.present_mean(risks, present) + weight * penalty) / divisor
  aux = {"ce": jnp.mean(ce), "penalty": penalty,
         "accuracy": base.accuracy(logits, batch["labels"])}
  return total, aux, extra


# beta = 2 w, w their weight (up to their default 1e4); quick: the weakest and the strongest.
VREX_GRID = (2e2, 2e3, 2e4)
VREX_QUICK_GRID = (2e4,)  # One point: the quick profile keeps its budget.
VREX_WARMUP_FRACTION = 100 / 501

METHOD = base.Method(
    name="vrex", loss=loss,
    summary="mean env risk + lam * variance of the env risks (V-REx), after warmup",
    paper="Krueger et al. 2021, 'Out-of-Distribution Generalization via Risk Extrapolation'",
    knows=irm.ENV_KNOWS,
    lam_means="variance weight beta after warmup (1 before; the loss divided by it when > 1)",
    batch_keys=("images", "labels", "index"), sliceable=False, defaults=irm.ENV_DEFAULTS,
    init_extra=irm.init_extra, check=irm.check,
    benchmark=base.Benchmark(title="V-REx", grid=VREX_GRID, quick_grid=VREX_QUICK_GRID,
                             warmup_epochs=1, warmup_fraction=VREX_WARMUP_FRACTION))
