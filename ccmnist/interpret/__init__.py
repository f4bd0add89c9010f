"""Interpretability: Grad-CAM and friends, feature visualization, channel selectivity.

interpret_runs(runs, cfg, out_dir) (in `run`) runs all of them on trained runs.
"""


def interpret_runs(runs, cfg, out_dir):
  """See ccmnist.interpret.run.interpret_runs (imported lazily: it pulls in matplotlib)."""
  from ccmnist.interpret import run as interpret_run  # pylint: disable=import-outside-toplevel
  return interpret_run.interpret_runs(runs, cfg, out_dir)
