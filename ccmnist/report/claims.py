"""What the study reports, quoted so our report can print it beside what we measure.

These are claims to check, never results: nothing in ccmnist computes with them.
Fractions in [0, 1]; epsilons in pixel units.
"""

STUDY = {"title": "Biased Model Analysis: Understanding and Mitigating Spurious Correlations in "
                  "CNNs", "author": "Saketh", "date": "9 February 2026", "kind": "technical report",
         "budget": "60,000 digits for 4-10 epochs per run"}

CHEATER = {"train": 0.968, "test_hard": 0.243}
COLOR_SWAP_3_BROWN = 0.87  # "87% of brown-3's predicted as 8".
GRADIENT_PENALTY = {"lam": 0.1, "train": 0.923, "test_hard": 0.417,
                    "grid": (0.05, 0.1, 0.2, 0.5)}
COUNTERFACTUAL = {  # lambda -> (train, test_hard)
    0.1: (0.951, 0.723), 0.25: (0.938, 0.814), 0.5: (0.912, 0.852), 1.0: (0.876, 0.831),
    2.0: (0.823, 0.789)}
GRADCAM_TABLE = {  # model -> (color-matched acc, color-mismatched acc, spread)
    "cheater": (0.968, 0.243, "high (diffuse)"),
    "counterfactual": (0.852, 0.961, "low (localized)")}
EPS_SWEEP = {  # targeted PGD success (target confidence > 0.9) by epsilon
    "cheater": {5.0: 0.42, 7.5: 0.71, 10.0: 0.89, 12.75: 0.98, 15.0: 0.99, 20.0: 1.00},
    "counterfactual": {5.0: 0.08, 7.5: 0.21, 10.0: 0.35, 12.75: 0.67, 15.0: 0.84, 20.0: 0.96}}
PGD_EPS = 12.75  # The study's attack budget (0.05 x 255).
TRANSFER = {  # (source, target) -> target-class confidence
    ("cheater", "cheater"): 0.963, ("cheater", "counterfactual"): 0.281,
    ("counterfactual", "counterfactual"): 0.921, ("counterfactual", "cheater"): 0.784}
