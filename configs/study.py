"""The whole study: data -> cheater -> debiasing grids -> controls -> evaluate -> interpret ->
attack -> report.

  python -m launch.study --config=configs/study.py:quick --workdir=/tmp/ccmnist/study_quick
  python -m launch.study --config=configs/study.py:full --workdir=/tmp/ccmnist/study_full
  python -m launch.study --config=configs/study.py:quick --config.num_seeds=5 --workdir=DIR
  python -m launch.study --config=configs/study.py:quick --config.only=cheater --workdir=DIR

'full' uses the study's settings for every run (60,000-digit train set less the held-out
validation digits, each run's own epochs and optimizer); 'quick' trains on a 20,000-digit subset
for fewer epochs so the study runs in minutes on a laptop CPU; 'tiny' uses synthetic digits and is
for tests only. Each run of config.runs is an ordinary training config (configs/<name>.py) whose
data, seed and num_seeds the study sets.
"""

import ml_collections

from configs import attack
from configs import cheater
from configs import color_gradient_penalty
from configs import common
from configs import counterfactual
from configs import erm_adam
from configs import gradient_penalty
from configs import interpret

def _run(config, *, lam_grid=()):
  """The run-specific parts of a training config (model, loss, optim, train, data overrides)."""
  run = ml_collections.ConfigDict()
  run.model = config.model
  run.loss = config.loss
  run.optim = config.optim
  run.train = config.train
  if lam_grid:
    run.loss.lam_grid = tuple(lam_grid)
  # Data settings in which the run differs from the study's (e.g. the gradient-penalty runs
  # use noise-free images, as the study's did).
  default = common.data_config("full")
  run.data_overrides = ml_collections.ConfigDict(
      {k: config.data[k] for k in ("noise_sigma", "coloring", "rho_train", "grayscale")
       if config.data[k] != default[k]})
  return run


def _grayscale(config):
  """A run's twin trained (and tested) on grey digits, the benchmark's grayscale oracle: with no
  color to learn, it is the positive control of the representation measures' 'shape' call."""
  with config.unlocked():
    config.data.grayscale = True
  return _run(config)


def _noise_twin(config, *, sigma: float):
  """A run's twin trained with Gaussian noise of std `sigma` (pixel units) on every image."""
  with config.unlocked():
    config.loss.name = "gaussian_noise"
    config.loss.settings = ml_collections.ConfigDict({"sigma": sigma})
  return _run(config)


def _analysis(models: str, settings):
  """An analysis stage: the runs it analyses and its own config (configs/interpret.py or
  configs/attack.py of the study's size)."""
  return ml_collections.ConfigDict(dict(models=models, settings=settings.to_dict()))


def get_config(arg=None):
  variant = common.parse_arg(arg).size
  size = None if variant == "full" else variant
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 3 if variant == "full" else 1
  c.only = ""  # A comma-separated list of stages to run (e.g. 'cheater,report'); '' runs all.
  # Another study's results.json (e.g. the full profile's, beside a quick run): the report lists
  # the findings whose verdicts differ between the two and each profile's training budget.
  c.compare_with = ""
  c.data = common.data_config(size)
  # Held out from the training digits for honest model selection.
  c.data.train_size = {"full": 54_000, "quick": 20_000, "tiny": 400}[variant]
  c.data.val_size = {"full": 5_000, "quick": 2_000, "tiny": 60}[variant]
  c.data.val_unbiased_size = {"full": 1_000, "quick": 1_000, "tiny": 40}[variant]
  # The training runs, in the order they are trained and reported.
  runs = {
      "cheater": _run(cheater.get_config(size)),
      # The study's penalty trained to fit (Adam), over a lambda grid up to where the penalty
      # weighs as much as the cross-entropy (configs/gradient_penalty.py:fit); beside it, the
      # study's own optimizer and budget, whose lambda = 0 control may not fit.
      "gradient_penalty": _run(gradient_penalty.get_config(",".join(("fit", variant)))),
      "gradient_penalty_study": _run(
          gradient_penalty.get_config(size),
          lam_grid=(0.0, 0.05, 0.1, 0.2, 0.5) if variant == "full" else (0.0, 0.1)),
      # The quick profile keeps every grid's ends and the study's λ, to stay a few minutes.
      "counterfactual": _run(counterfactual.get_config(size),
                             lam_grid=(0.0, 0.1, 0.5, 2.0) if variant == "quick"
                             else (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)),
      "color_gradient_penalty": _run(color_gradient_penalty.get_config(size),
                                     lam_grid=(0.0, 0.1, 0.5) if variant == "quick"
                                     else (0.0, 0.05, 0.1, 0.2, 0.5)),
      "erm_adam": _run(erm_adam.get_config(size)),
      "erm_momentum": _run(erm_adam.get_config(f"momentum,{variant}")),
      # erm_adam's twin trained on Gaussian-noised images: the base classifier randomized
      # smoothing certifies (attack stage), at the smoothing's middle sigma.
      "erm_adam_noise": _noise_twin(erm_adam.get_config(size), sigma=0.25 * 255),
      # The step-size control: the cheater's run (plain SGD, its data, batch and epochs) over a
      # learning-rate grid, and the cheater at the study's lr trained for longer.
      "erm_sgd_lr": _run(cheater.get_config(f"lr_grid,{variant}")),
      "cheater_long": _run(cheater.get_config(f"long,{variant}")),
      "grayscale": _grayscale(cheater.get_config(size)),
  }
  # The study names no optimizer for its counterfactual run; with plain SGD lr 1e-3 the
  # consistency term can start while the model is still on its initial plateau. This study runs
  # Adam, and its erm_adam control shows how much of that is the optimizer alone.
  runs["counterfactual"].optim.update(dict(name="adam", lr=1e-3, momentum=0.0))
  c.runs = ml_collections.ConfigDict(runs)
  c.train_runs = tuple(runs)  # Their order (a ConfigDict lists its keys sorted).
  # Every lambda grid starts at 0, the control that differs from the method in the method alone.
  # Which grid point stands for a debiasing method downstream (interpret, attack): the study's.
  c.downstream_lam = ml_collections.ConfigDict(dict(
      gradient_penalty=0.1, gradient_penalty_study=0.1, counterfactual=0.5,
      color_gradient_penalty=0.1))
  # grayscale: the positive control of the representation measures' 'shape' call.
  c.interpret = _analysis("cheater,gradient_penalty,counterfactual,grayscale",
                          interpret.get_config(size))
  # name@0: the method's own lambda = 0 grid point, which differs from it in nothing but the
  # method (same optimizer, data, epochs, seeds): the control its verdicts compare against.
  c.attack = _analysis("cheater,gradient_penalty,counterfactual,erm_adam,erm_adam_noise,"
                       "gradient_penalty@0,counterfactual@0", attack.get_config(size))
  c.lock()
  return c
