"""Adversarial analysis of trained runs: writes DIR/attack.json and DIR/figures/*.png.

  python -m launch.attack --config=configs/attack.py:quick \
      --config.runs=cheater=/tmp/ccmnist/cheater_quick,debiased=/tmp/ccmnist/debiased_quick \
      --workdir=/tmp/ccmnist/attack_quick
"""

from absl import flags

from ccmnist.attacks import run as attack_run
from launch import common

_CONFIG = common.define_config_file("config", "configs/attack.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def main(argv):
  del argv
  common.setup_logging()
  cfg = _CONFIG.value
  attack_run.attack_runs(cfg.runs, cfg, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
