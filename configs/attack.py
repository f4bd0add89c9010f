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

  if size == "quick":
    c.targets.num_images = 200
    c.min_eps.num_images = 100
  elif size == "tiny":  # Seconds: for tests on 'tiny' runs.
    c.batch_size = 16
    c.targets.num_images = 24
    c.pgd.steps = 5
    c.min_eps.num_images = 16
    c.min_eps.iters = 4
  c.lock()
  return c
