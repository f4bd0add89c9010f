"""DFR: Deep Feature Reweighting, a trained run's last layer refit on group-balanced held-out data.

Kirichenko, Izmailov and Wilson 2022, "Last Layer Re-Training is Sufficient for Robustness to
Spurious Correlations" (ICLR 2023). A method of kind 'refit': nothing is trained with a loss; the
refit of the run its benchmark entry needs (train/dfr.py) makes a training workdir. lam is the
L2 strength per example of the refit (sklearn's C = 1 / (lambda * n)).

Settings (train/dfr.py's refit keywords): steps, split (the held-out split refit on), per_group
(examples of each group; None: the smallest group's size), base_lam (the base run's grid point
refit; None: its headline lambda).
"""

from ccmnist.train.methods import base

DEFAULTS = {"steps": 100, "split": "val_balanced", "per_group": None, "base_lam": None}

METHOD = base.Method(
    name="dfr", loss=None, kind="refit",
    summary="the needed run's last layer refit on a group-balanced subset of val_balanced",
    paper="Kirichenko et al. 2022, 'Last Layer Re-Training is Sufficient for Robustness to "
          "Spurious Correlations'",
    knows="the group (digit x color aligned or not) of every held-out val_balanced example",
    lam_means="L2 strength per example of the head's refit", defaults=DEFAULTS,
    benchmark=base.Benchmark(title="DFR (last layer refit)", grid=(1e-3, 1e-2, 1e-1),
                             quick_grid=(1e-3, 1e-2), needs="erm"))
