"""Trains a config's replicas; writes DIR/{config.json, metrics.jsonl, checkpoints/, results.json}.

  python -m launch.train --config=configs/cheater.py --workdir=/tmp/ccmnist/cheater
  python -m launch.train --config=configs/counterfactual.py:quick --workdir=/tmp/ccmnist/cf_quick
  python -m launch.train --config=configs/cheater.py --config.train.epochs=3 --workdir=DIR

Rerunning with the same --workdir resumes from the last checkpoint (a finished run is not redone).
Multi-host data parallel (untested here): the same command on every host with --multihost and
--config.train.data_parallel=True.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from ccmnist.train import loop
from launch import common

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cheater.py", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the run.", required=True)
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")


def main(argv):
  del argv
  common.setup_logging()
  if _MULTIHOST.value:
    jax.distributed.initialize()  # Coordinator and process ids from the cluster environment.
  loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
