"""Adversarial robustness of trained runs (the study's Task 5 and more).

The study's attack: targeted PGD, Linf, eps 12.75 (0.05 * 255), step 1.5, 30 steps, random
start, CE toward the target; success = target probability > 0.9; example 7 -> 3.

  python -m launch.attack --config=configs/attack.py \
      --config.runs=cheater=/tmp/ccmnist/cheater,debiased=/tmp/ccmnist/debiased \
      --workdir=/tmp/ccmnist/attack
  python -m launch.attack --config=configs/attack.py:quick \
      --config.runs=cheater=/tmp/ccmnist/cheater_quick,debiased=/tmp/ccmnist/debiased_quick \
      --workdir=/tmp/ccmnist/attack_quick
"""

import ml_collections

from configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg).size
  c = ml_collections.ConfigDict()
  c.runs = ""  # "name=workdir,name=workdir": trained runs (ccmnist.train.runs.load_run).
  c.replica = 0  # Which replica of each run.
  c.data_run = ""  # The run whose data config gives the split; empty: the first run.
  c.split = "test_hard"
  c.seed = 0  # Example choice and attack random starts.
  c.batch_size = 200  # Fixed attack batch (the last one padded): one compile per program.
  # Conv implementation for the attacks ('' = the run's own). Same numbers; 's2d' turns the
  # strided convs into unstrided ones, whose input gradient XLA:CPU computes faster.
  c.conv_impl = "s2d"

  # Which examples and targets. 'fixed': every digit other than `target` -> `target`;
  # 'pair': `source` -> `target` (the study's 7 -> 3); 'shift': label -> (label + shift) % 10.
  c.targets = ml_collections.ConfigDict(dict(
      rule="fixed", target=3, source=7, shift=1, exclude_target_color=True, num_images=1000))

  # The attack, built once (ccmnist.attacks.pgd.from_config): these keys are its arguments.
  c.pgd = ml_collections.ConfigDict(dict(
      norm="linf", eps=12.75, step_size=1.5, steps=30, random_start=True, loss="ce",
      restarts=1, targeted=True,
      step_size_rel=0.0))  # > 0: step = step_size_rel * eps, at every epsilon tried.
  c.success = ml_collections.ConfigDict(dict(threshold=0.9, criterion="prob"))  # or 'argmax'.
  # batching: 'vmap' (all epsilons in every step; accelerators) or 'map' (one after another
  # inside the same program: the working set of one epsilon, which can suit a small CPU;
  # launch.speed measures the sweep against one epsilon).
  c.sweep = ml_collections.ConfigDict(dict(epsilons=(5.0, 7.5, 10.0, 12.75, 15.0, 20.0),
                                           batching="vmap"))
  # Bisection on [0, eps_max]; 30 steps of 1.5 travel 45 pixels, enough for eps_max 30.
  c.min_eps = ml_collections.ConfigDict(dict(eps_max=30.0, iters=10, num_images=500))
  # Perturbation anatomy (ccmnist.attacks.anatomy): the stroke is where a pixel's largest
  # channel deviation from its channel mean exceeds stroke_threshold (pixel levels); the null's
  # random signs are drawn with null_seed.
  c.anatomy = ml_collections.ConfigDict(dict(stroke_threshold=30.0, null_seed=0))
  # The study's single example: the first (seeded) test image of digit `source`, target `target`.
  c.example = ml_collections.ConfigDict(dict(source=7, target=3))
  # The attack suite (ccmnist.attacks.suite), on the first num_images attacked images of each
  # model in `models` ('' = every run): APGD-CE, targeted APGD-DLR toward the dlr_targets
  # highest other classes, Square (square_queries forward passes, p_init); robust accuracy per
  # attack and the worst case, untargeted, at eps. Masking checks: APGD-CE at grey_eps (127.5
  # reaches a grey image from any image) must leave accuracy <= zero_tol; Square and transfer
  # must not beat the white-box attacks, nor check_steps x check_restarts raise APGD-CE's
  # robust accuracy, by more than tol.
  c.suite = ml_collections.ConfigDict(dict(
      enabled=True, models="", num_images=1000, batch_size=200, eps=12.75, steps=100,
      restarts=1, dlr_targets=9, square_queries=5000, square_p_init=0.8, grey_eps=128.0,
      zero_tol=0.01, tol=0.02, check_steps=200, check_restarts=3))
  # Randomized smoothing (ccmnist.attacks.smoothing): certify the first num_images attacked
  # images of each model in `models` at every sigma (pixel units of 255), n0 selection and n
  # estimation samples, failure probability alpha; certified accuracy at each L2 radius.
  c.smoothing = ml_collections.ConfigDict(dict(
      enabled=True, models="", num_images=500, sigmas=(0.12 * 255, 0.25 * 255, 0.5 * 255),
      n0=100, n=10_000, alpha=0.001, chunk=100,
      radii=(0.0, 16.0, 32.0, 64.0, 96.0, 128.0, 192.0, 255.0)))

  if size == "quick":
    c.targets.num_images = 200
    c.min_eps.num_images = 100
    c.suite.update(dict(models="cheater,counterfactual,counterfactual@0", num_images=100,
                        batch_size=100, steps=50, dlr_targets=3, square_queries=300,
                        check_steps=100, check_restarts=2))
    c.smoothing.update(dict(models="counterfactual,erm_adam,erm_adam_noise", num_images=50,
                            sigmas=(0.25 * 255, 0.5 * 255), n0=32, n=256, chunk=64))
  elif size == "tiny":  # Seconds: for tests on 'tiny' runs.
    c.batch_size = 16
    c.targets.num_images = 24
    c.pgd.steps = 5
    c.min_eps.num_images = 16
    c.min_eps.iters = 4
    c.suite.update(dict(models="counterfactual,counterfactual@0", num_images=16,
                        batch_size=16, steps=5, dlr_targets=2,
                        square_queries=10, check_steps=6, check_restarts=2))
    c.smoothing.update(dict(models="counterfactual,erm_adam,erm_adam_noise", num_images=16,
                            sigmas=(0.25 * 255, 0.5 * 255), n0=8, n=32, chunk=16))
  c.lock()
  return c
