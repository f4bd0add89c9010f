"""The study's shortcut learner: CheaterCNN, ERM, plain SGD lr 1e-3, batch 64, 10 epochs.

  python -m launch.train --config=configs/cheater.py --workdir=/tmp/ccmnist/cheater
  python -m launch.train --config=configs/cheater.py:quick --workdir=/tmp/ccmnist/cheater_quick
"""

from configs import common


def get_config(arg=None):
  c = common.train_config(common.parse_arg(arg).size)
  c.lock()
  return c
