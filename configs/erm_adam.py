"""The cheater (CheaterCNN, plain cross-entropy) with a stronger optimizer than the study's SGD.

Variants (common.parse_arg): optimizer adam (default) or momentum, and a size:
  None / 'full' / 'quick' / 'tiny'   Adam lr 1e-3.
  'momentum' / 'momentum,quick' / 'momentum,tiny'   SGD with momentum 0.9, lr 1e-2.
Full: 60k images, batch 64, 10 epochs (as the study's cheater). 'quick': 20k training / 5k test
images, 3 epochs (the optimizer is unchanged: both learn fast enough).

  python -m launch.train --config=configs/erm_adam.py --workdir=/tmp/ccmnist/erm_adam
  python -m launch.train --config=configs/erm_adam.py:momentum --workdir=/tmp/ccmnist/erm_mom
  python -m launch.train --config=configs/erm_adam.py:momentum,quick --workdir=/tmp/ccmnist/mq
"""

from configs import common

OPTIMIZERS = {"adam": {"name": "adam", "lr": 1e-3, "momentum": 0.0},
              "momentum": {"name": "sgd", "lr": 1e-2, "momentum": 0.9}}


def get_config(arg=None):
  variant = common.parse_arg(arg, optimizer=tuple(OPTIMIZERS))
  c = common.train_config(variant.size)
  c.optim.update(OPTIMIZERS[variant.optimizer])
  c.lock()
  return c
