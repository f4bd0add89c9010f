"""Evaluates a training workdir: writes DIR/eval.json and DIR/figures/{confusion_<split>,
color_swap,training_curves}.png.

  python -m launch.evaluate --workdir=/tmp/ccmnist/cheater
  python -m launch.evaluate --workdir=/tmp/ccmnist/cheater --n_per_digit=200 --probe_seed=1
"""

from absl import flags

from ccmnist import eval as eval_lib
from launch import common

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir (launch.train's).",
                               required=True)
_N_PER_DIGIT = flags.DEFINE_integer("n_per_digit", 100, "Test digits per color-swap cell.")
_PROBE_SEED = flags.DEFINE_integer("probe_seed", 0, "Seed of the color-swap probe's coloring.")
_FIGURE_REPLICA = flags.DEFINE_integer(
    "figure_replica", 0, "Which replica (grid point x seed) the figures show; see results.json.")


def main(argv):
  del argv
  common.setup_logging()
  eval_lib.evaluate_training_run(_WORKDIR.value, n_per_digit=_N_PER_DIGIT.value,
                        probe_seed=_PROBE_SEED.value, figure_replica=_FIGURE_REPLICA.value)


if __name__ == "__main__":
  common.run(main)
