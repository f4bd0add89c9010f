"""The cheater (CheaterCNN, plain cross-entropy) with a stronger optimizer than the study's SGD.

Variants: arg = '[momentum][_size]', size one of full (default), quick, tiny:
  None / 'full' / 'quick' / 'tiny'   Adam lr 1e-3.
  'momentum' / 'momentum_quick' / 'momentum_tiny'   SGD with momentum 0.9, lr 1e-2.
Full: 60k images, batch 64, 10 epochs (as the study's cheater). 'quick': 20k training / 5k test
images, 3 epochs (the optimizer is unchanged: both learn fast enough).

  python -m launch.train --config=configs/erm_adam.py --workdir=/tmp/ccmnist/erm_adam
  python -m launch.train --config=configs/erm_adam.py:momentum --workdir=/tmp/ccmnist/erm_mom
  python -m launch.train --config=configs/erm_adam.py:momentum_quick --workdir=/tmp/ccmnist/mq
"""

from configs import common

OPTIMIZERS = {"adam": {"name": "adam", "lr": 1e-3, "momentum": 0.0},
              "momentum": {"name": "sgd", "lr": 1e-2, "momentum": 0.9}}
SIZES = ("full", "quick", "tiny")


def parse_arg(arg):
  """'momentum_quick' -> ('momentum', 'quick'); None -> ('adam', 'full')."""
  parts = [p for p in (arg or "").split("_") if p]
  optimizer = parts.pop(0) if parts and parts[0] in OPTIMIZERS else "adam"
  size = parts.pop(0) if parts and parts[0] in SIZES else "full"
  if parts:
    raise ValueError(f"Unknown variant {arg!r}; use [adam|momentum][_full|_quick|_tiny], e.g. "
                     "'momentum_quick'.")
  return optimizer, size


def get_config(arg=None):
  optimizer, size = parse_arg(arg)
  c = common.train_config(size)
  c.optim.update(OPTIMIZERS[optimizer])
  c.lock()
  return c
