"""Builds the colored splits and writes DIR/data/*.npz and DIR/figures/samples_<split>.png."""

from absl import flags

from ccmnist import study
from launch import common

_CONFIG = common.define_config_file("config", "configs/data.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def main(argv):
  del argv
  common.setup_logging()
  study.make_data(_CONFIG.value.data, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
