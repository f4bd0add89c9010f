"""The study's shortcut learner: CheaterCNN, ERM, plain SGD lr 1e-3, batch 64, 10 epochs.

Variants (common.parse_arg): a run and a size.
  'cheater' (default)   the study's cheater ('quick' trains at lr 1e-2: configs/common.py).
  'lr_grid'   the cheater's run (data, batch, epochs of its size) over the learning rates
              LR_GRID, as replicas of one program (config.optim.lr_grid); its headline point is
              the study's lr 1e-3.
  'long'      the cheater at the study's lr 1e-3 for LONG_FACTOR times its size's epochs.

  python -m launch.train --config=configs/cheater.py --workdir=/tmp/ccmnist/cheater
  python -m launch.train --config=configs/cheater.py:quick --workdir=/tmp/ccmnist/cheater_quick
  python -m launch.train --config=configs/cheater.py:lr_grid,quick --workdir=/tmp/ccmnist/lrq
  python -m launch.train --config=configs/cheater.py:long,quick --workdir=/tmp/ccmnist/longq
"""

from configs import common

STUDY_LR = 1e-3
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
LONG_FACTOR = 4  # The long run's epochs, in multiples of the cheater's.


def get_config(arg=None):
  variant = common.parse_arg(arg, run=("cheater", "lr_grid", "long"))
  c = common.train_config(variant.size)
  if variant.run == "lr_grid":
    c.optim.lr = STUDY_LR
    c.optim.lr_grid = LR_GRID
  elif variant.run == "long":
    c.optim.lr = STUDY_LR
    c.train.epochs *= LONG_FACTOR
  c.lock()
  return c
