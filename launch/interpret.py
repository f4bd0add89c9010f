"""Interprets trained runs; writes DIR/interpret.json and DIR/figures/*.png."""

from absl import flags

from ccmnist.interpret import run as interpret_run
from launch import common

_CONFIG = common.define_config_file("config", "configs/interpret.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def main(argv):
  del argv
  common.setup_logging()
  interpret_run.interpret_runs(_CONFIG.value.runs, _CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
