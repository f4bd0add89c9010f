"""The study's colored-MNIST splits (foreground stroke, rho 0.95 train, never-aligned hard test).

  python -m launch.make_data --config=configs/data.py --workdir=/tmp/ccmnist/data
  python -m launch.make_data --config=configs/data.py --config.data.coloring=background \
      --workdir=DIR
"""

import ml_collections

from configs import common


def get_config(arg=None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = common.data_config(common.parse_arg(arg).size)
  c.data.val_size = 0
  c.lock()
  return c
