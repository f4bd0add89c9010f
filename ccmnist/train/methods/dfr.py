"""DFR: Deep Feature Reweighting, a trained run's last layer refit on group-balanced held-out data.

Kirichenko, Izmailov and Wilson 2022, "Last Layer Re-Training is Sufficient for Robustness to
Spurious Correlations" (ICLR 2023). A method of kind 'refit': nothing is trained with a loss; the
refit of the run its benchmark entry needs (train/dfr.py) makes a training workdir. lam is the
strength per example of the refit's penalty (sklearn's C = 1 / (lambda * n), n the subset size).

Settings (train/dfr.py's refit keywords): penalty ('l1', the paper's; or 'l2'), num_subsets
(group-balanced subsets per seed whose heads are averaged, as the authors' retrains), steps
(optimizer steps of a fit; None: train/dfr.py's DEFAULT_STEPS), split (the held-out split refit
on), per_group (examples of each group; None: the smallest group's size), base_lam (the base
run's grid point refit; None: its headline lambda).

The benchmark's grid spans the authors' C grid (1, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01 in
dfr_evaluate_spurious.py) at the full profile's subset size n, a little under its
val_balanced_size (lambda = 1 / (C n)); the quick one keeps two of its points.
"""

from ccmnist.train.methods import base

DEFAULTS = {"steps": None, "split": "val_balanced", "per_group": None, "base_lam": None,
            "penalty": "l1", "num_subsets": 10}

METHOD = base.Method(
    name="dfr", loss=None, kind="refit",
    summary="the needed run's last layer refit (L1 logistic regression, averaged over "
            "group-balanced subsets of val_balanced)",
    paper="Kirichenko et al. 2022, 'Last Layer Re-Training is Sufficient for Robustness to "
          "Spurious Correlations'",
    knows="the group (digit x color aligned or not) of every held-out val_balanced example",
    lam_means="L1 strength per example of the head's refit (C = 1 / (lam n))", defaults=DEFAULTS,
    benchmark=base.Benchmark(title="DFR (last layer refit)", grid=(1e-3, 3e-3, 1e-2, 3e-2),
                             quick_grid=(3e-3, 3e-2), needs="erm"))
