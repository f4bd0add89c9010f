"""What LfF and DFA publish for Colored MNIST, and how their code trains it, quoted with sources.

Plain data for the benchmark report to print beside what it measures; nothing in ccmnist computes
with it. Two kinds of entries:

- TABLES: published unbiased-test accuracies in percent, {table id: table}. A table is
  {"paper", "table", "source", "metric", "ratio_convention", "caveats", "rows": {method: {ratio:
  (mean, std)}}}, std None where the source prints none. Only numbers read in the named source
  belong here, never numbers from memory; a table not read anywhere is listed in UNQUOTED
  instead, with what was searched.
- PROTOCOLS: the Colored-MNIST training settings of the two official repositories, {"lff",
  "dfa"}, each setting beside the file and lines (at the pinned commit) it was read from.

Ratios are always the bias-conflicting fraction of the training set (0.005 = 0.5%, rho_train =
0.995). LfF's paper states the complement, the bias-aligned ratio (99.5%); DFA's repository names
its splits "0.5pct" and LfF's its configs "skewed4" (Skewed0.005).
"""

import copy
import math

RATIOS = (0.005, 0.01, 0.02, 0.05)

LFF_REPO = "github.com/alinlab/LfF@e66796ec117ea52d2e44176055b7ef7959680a1b"
DFA_REPO = ("github.com/kakaoenterprise/Learning-Debiased-Disentangled"
            "@7626f3692f412ebae8d872480fdaa85ab9cddec0")

_CONFLICTING = ("the bias-conflicting share of the training set: 0.5 / 1 / 2 / 5 % (LfF's "
                "'skewed' 0.005 / 0.01 / 0.02 / 0.05; bias-aligned 99.5 / 99 / 98 / 95 %)")

# Numbers copied as printed, in percent, (mean, std); None where the source prints no std.
TABLES = {
    "dfa2021_table1_via_liu2023": {
        "paper": "Lee et al. 2021 (DFA / DisEnt), as reprinted in Liu et al. 2023",
        "table": "Table 1",
        "source": ("Liu, Wang, Tsai, Kim, Liu, Lin. \"Avoiding spurious correlations via logit "
                   "correction.\" ICLR 2023 (arXiv 2212.01433), Table 1, caption: "
                   "\"Classification accuracy (%) evaluated on group balanced test sets of "
                   "C-MNIST ... The baseline method results are taken from Lee et al. (2021) as "
                   "the same experiment settings are adopted.\" No std is printed there."),
        "metric": "accuracy (%) on a group-balanced (unbiased) test set",
        "ratio_convention": _CONFLICTING,
        "caveats": ("whether the Group DRO and GEORGE rows come from Lee et al. 2021 is not "
                    "certain (the caption says \"baseline method results\"); Lee et al.'s own "
                    "code selects its checkpoint by best test accuracy and uses an MLP "
                    "100-100-16 with lr 0.01 (their README's Colored MNIST command), not LfF's."),
        "rows": {
            "Group DRO": {0.005: (63.12, None), 0.01: (68.78, None), 0.02: (76.30, None),
                          0.05: (84.20, None)},
            "ERM (vanilla)": {0.005: (35.19, None), 0.01: (52.09, None), 0.02: (65.86, None),
                              0.05: (82.17, None)},
            "GEORGE": {0.005: (36.04, None), 0.01: (56.44, None), 0.02: (65.10, None),
                       0.05: (81.64, None)},
            "LfF": {0.005: (52.50, None), 0.01: (61.89, None), 0.02: (71.03, None),
                    0.05: (80.57, None)},
            "DFA (DisEnt)": {0.005: (65.22, None), 0.01: (81.73, None), 0.02: (84.79, None),
                             0.05: (89.66, None)},
            "LC (Liu et al.)": {0.005: (71.25, None), 0.01: (82.25, None), 0.02: (86.21, None),
                                0.05: (91.15, None)},
        },
    },
    "denetdm2024_table1": {
        "paper": "Sreelatha et al. 2024 (DeNetDM)",
        "table": "Table 1",
        "source": ("Sreelatha, Kappiyath, Chaudhuri, Dubey. \"DeNetDM: Debiasing by Network "
                   "Depth Modulation.\" NeurIPS 2024, Table 1, \"Testing accuracy on CMNIST "
                   "...\", mean (std). Caption: \"For CMNIST, we utilize the official "
                   "repositories to obtain the models.\""),
        "metric": "accuracy (%) on an unbiased test set, mean (std)",
        "ratio_convention": _CONFLICTING,
        "caveats": ("no std is printed for Group DRO; the ERM and LfF rows equal, to the digit, "
                    "the numbers usually quoted from Nam et al. 2020's own Colored MNIST table, "
                    "an attribution that could not be checked in a readable copy of Nam et al., "
                    "so they are cited to Sreelatha et al. 2024."),
        "rows": {
            "Group DRO": {0.005: (59.67, None), 0.01: (71.33, None), 0.02: (76.30, None),
                          0.05: (84.40, None)},
            "ERM (vanilla)": {0.005: (35.34, 0.13), 0.01: (50.34, 0.16), 0.02: (62.29, 1.47),
                              0.05: (77.63, 0.13)},
            "JTT": {0.005: (53.03, 3.89), 0.01: (61.68, 2.02), 0.02: (74.23, 3.21),
                    0.05: (85.03, 1.10)},
            "LfF": {0.005: (63.39, 1.97), 0.01: (74.01, 2.21), 0.02: (80.48, 0.45),
                    0.05: (85.39, 0.94)},
            "DFA (DisEnt)": {0.005: (59.12, 3.15), 0.01: (71.04, 1.02), 0.02: (82.86, 2.27),
                             0.05: (88.29, 1.50)},
            "LC": {0.005: (63.48, 5.22), 0.01: (78.41, 1.95), 0.02: (83.63, 1.43),
                   0.05: (88.18, 1.59)},
        },
    },
}

# Tables not read in any source. Lee et al. 2021's own Table 1 is in TABLES as Liu et al. 2023
# reprints it; Nam et al. 2020's is read nowhere (only numbers equal to those usually quoted from
# it, in Sreelatha et al. 2024).
UNQUOTED = {
    "lff2020_cmnist": (
        "Nam et al. 2020, Learning from Failure (NeurIPS), Colored MNIST accuracy table "
        "(Vanilla, HEX, REPAIR, Group DRO, LfF at aligned ratios 95/98/99/99.5%): not read in a "
        "readable copy of the paper; README.md at " + LFF_REPO + " has no results. Sreelatha "
        "et al. 2024's ERM and LfF rows (quoted here) equal the numbers usually quoted from it."),
}

_LFF_NOTE = (
    "Both networks (biased: GCE; debiased: CE weighted by W) update together, each with its own "
    "Adam, on loss = GCE_b.mean() + (W * CE_d).mean(). W = l_b / (l_b + l_d + 1e-8), l_* the "
    "per-sample EMA of CE (alpha 0.7; first update takes the value) divided by the largest EMA "
    "of that class over the training set. GCE is coded as CE * q * p_y^q with p_y detached: the "
    "gradient of (1 - p_y^q) / q times q.")

PROTOCOLS = {
    "lff": {
        "repo": LFF_REPO,
        "paper": "Nam et al. 2020, Learning from Failure, NeurIPS",
        "command": "python train.py with server_user colored_mnist skewed3 severity4 "
                   "(vanilla: train_vanilla.py, same named configs)",
        "model": {"name": "MLP", "widths": (3 * 28 * 28, 100, 100, 100, 10),
                  "activation": "ReLU after each of the 3 hidden layers, none on the logits"},
        "input_scale": "ToTensor's / 255, then the MLP's own / 255: inputs in [0, 1/255]",
        "optimizer": "Adam", "lr": 1e-3, "weight_decay": 0.0, "lr_schedule": "constant",
        "batch_size": 256, "steps": 235 * 100, "steps_per_epoch": 235, "epochs": 100,
        "gce_q": 0.7, "ema_alpha": 0.7, "loss": _LFF_NOTE,
        "vanilla": "one MLP, mean CE, same optimizer, steps and evaluation",
        "split_sizes": {"train": 60000, "valid": 10000, "test": None},
        "evaluation": "every 235 steps from step 0 on 'valid' (the MNIST test set, colored with "
                      "bias-aligned ratio 0.1, i.e. colors uniform); there is no other test split",
        "metric": "mean over the 10 x 10 (digit, color) groups of each group's accuracy",
        "selection": "none: every evaluation is saved (result.th), the model of the last step; "
                     "which evaluation the paper reports is not in the repository",
        "ratio_configs": {0.005: "skewed4", 0.01: "skewed3", 0.02: "skewed2", 0.05: "skewed1"},
        "color_std_by_severity": {1: 0.05, 2: 0.02, 3: 0.01, 4: 0.005, 5: 0.002},
        "severity_by_ratio": "make_dataset.py builds severities 1-4 for every ratio; the README "
                             "and script train 1% at severity 4 (std 0.005); which severity each "
                             "ratio of the paper's table used is not in the repository",
        "coloring": "clamp(mean_color[c] + N(0, std) per channel, 0, 1), one draw per image, "
                    "times the grey digit (0..255), truncated to uint8: black background; "
                    "mean colors: data/resource/colors.th (ccmnist.data.palette.LFF_COLORS)",
        "color_assignment": "deterministic, in dataset order: of each class's n images, the "
                            "first rounded cumulative shares take colors 0..9 in turn, the "
                            "class's own color with share rho and each other color (1 - rho) / 9",
        "sources": {
            "command": "README.md:19-21; script/train.sh:3-5",
            "model": "module/mlp.py:5-15; module/util.py:25-26",
            "input_scale": "data/util.py:45-48; module/mlp.py:18",
            "optimizer": "config.py:37-40; train.py:107-117",
            "lr": "config.py:39", "weight_decay": "config.py:40", "lr_schedule": "train.py:168-241",
            "batch_size": "config.py:37,65", "steps": "config.py:60",
            "steps_per_epoch": "config.py:60,63", "epochs": "config.py:60",
            "gce_q": "module/loss.py:10; train.py:134", "ema_alpha": "train.py:136-137",
            "loss": "train.py:182-241; module/loss.py:14-26; util.py:33-47",
            "vanilla": "train_vanilla.py:91-181",
            "split_sizes": "make_dataset.py:115-125 (torchvision MNIST train / test)",
            "evaluation": "train.py:56-61,140-162,269-276; make_dataset.py:115-122",
            "metric": "train.py:140-162,275; util.py:6-30",
            "selection": "train.py:305-317",
            "ratio_configs": "config.py:116-136",
            "color_std_by_severity": "data/colored_mnist_protocol.py:11-12",
            "severity_by_ratio": "make_dataset.py:149-155; README.md:20; script/train.sh:4",
            "coloring": "data/colored_mnist_protocol.py:11-18; make_dataset.py:133-134",
            "color_assignment": "make_dataset.py:17-50",
        },
    },
    "dfa": {
        "repo": DFA_REPO,
        "paper": "Lee et al. 2021, Learning Debiased Representation via Disentangled Feature "
                 "Augmentation, NeurIPS",
        "command": "python train.py --dataset cmnist --lr=0.01 --percent=<0.5|1|2|5>pct "
                   "--curr_step=10000 --lambda_swap=1 --lambda_dis_align=10 "
                   "--lambda_swap_align=10 --use_lr_decay --lr_decay_step=10000 --lr_gamma=0.5 "
                   "--train_ours (vanilla: --lr=0.01 --train_vanilla)",
        "model": {"name": "MLP_DISENTANGLE", "encoder_widths": (3 * 28 * 28, 100, 100, 16),
                  "activation": "ReLU after every encoder layer, the 16-wide output included",
                  "classifier": "Linear(32, 10) on concat(z_intrinsic, z_bias); two such "
                                "networks (intrinsic and bias), each classifying the concat"},
        "vanilla_model": {"name": "MLP", "widths": (3 * 28 * 28, 100, 100, 16, 10),
                          "activation": "ReLU after each of the 3 hidden layers"},
        "input_scale": "ToTensor's / 255, then the MLP's own / 255: inputs in [0, 1/255]",
        "optimizer": "Adam", "lr": 0.01, "weight_decay": 0.0, "batch_size": 256,
        "drop_last": True, "steps": 50000,
        "lr_schedule": "DisEnt: StepLR(10000, gamma 0.5) stepped only from step curr_step on, "
                       "so lr 0.01 to step 20000, then halved every 10000 steps; vanilla: "
                       "constant 0.01",
        "gce_q": 0.7, "ema_alpha": 0.7,
        "lambda_dis_align": 10.0, "lambda_swap_align": 10.0, "lambda_swap": 1.0,
        "curr_step": 10000,
        "loss": "L_dis = (W * CE(C_i(z), y)).mean() + lambda_dis_align * GCE(C_b(z), y).mean(); "
                "after curr_step, z_b is permuted within the batch: L_swap = (W * CE(C_i(z_swap), "
                "y)).mean() + lambda_swap_align * GCE(C_b(z_swap), y_perm).mean(); loss = L_dis + "
                "lambda_swap * L_swap. z_b is detached into C_i's input, z_i into C_b's. W as in "
                "LfF, from EMAs of the CE of the two concat heads",
        "split_sizes": {"train": None, "valid": None, "test": None},
        "data": "prebuilt images downloaded from Google Drive (cmnist/<pct>/{align,conflict,"
                "valid}, cmnist/test); no generator in the repository, so its sizes, colors and "
                "jitter are not in it",
        "evaluation": "every 500 steps, plain accuracy (correct / total) on valid and on test",
        "valid_bias": "valid has the training split's bias (author, issue #1)",
        "metric": "plain accuracy over the whole test split",
        "selection": "best test accuracy: the model is saved whenever test accuracy improves, "
                     "whatever valid says; the author says hyper-parameters were tuned on the "
                     "unbiased test distribution (issue #1)",
        "quirks": "--batch_size and --model are ignored for cmnist (fixed 256, MLP); the "
                  "repository trains no LfF baseline, so its table's LfF settings are not in it",
        "sources": {
            "command": "README.md:76-79,87-90; scripts/run_cmnist_ours.sh:3-12; "
                       "scripts/run_cmnist_vanilla.sh:3-12",
            "model": "module/mlp.py:7-39; learner.py:423-425,504-511",
            "vanilla_model": "module/mlp.py:41-65; learner.py:19-21,129",
            "input_scale": "data/util.py:143-148; module/mlp.py:21,30,56",
            "optimizer": "learner.py:435-445; train.py:13", "lr": "README.md:76-79,87-90",
            "weight_decay": "train.py:13", "batch_size": "learner.py:23-25,42,103-110",
            "drop_last": "learner.py:109", "steps": "train.py:18",
            "lr_schedule": "learner.py:447-449,574-576; README.md:76-79,87-90",
            "gce_q": "learner.py:451", "ema_alpha": "train.py:30; learner.py:151-152",
            "lambda_dis_align": "README.md:87-90; train.py:27",
            "lambda_swap_align": "README.md:87-90; train.py:28",
            "lambda_swap": "README.md:87-90; train.py:29",
            "curr_step": "README.md:87-90; learner.py:539",
            "loss": "learner.py:504-566",
            "split_sizes": "README.md:46-56; data/util.py:39-56",
            "data": "README.md:46-56; data/util.py:39-68",
            "evaluation": "train.py:40; learner.py:162-223,598-599",
            "valid_bias": "github.com/kakaoenterprise/Learning-Debiased-Disentangled/issues/1",
            "metric": "learner.py:183-223",
            "selection": "learner.py:294-304,328-341; github.com/kakaoenterprise/"
                         "Learning-Debiased-Disentangled/issues/1",
            "quirks": "learner.py:19-25,41-42; train.py:59-64",
        },
    },
}

_TABLE_KEYS = ("paper", "table", "source", "metric", "ratio_convention", "caveats", "rows")


def _ratio(ratio) -> float:
  """The entry of RATIOS that `ratio` denotes (1 - 0.995 and 0.005 are one ratio)."""
  for r in RATIOS:
    if isinstance(ratio, (int, float)) and math.isclose(ratio, r, abs_tol=1e-9):
      return r
  raise ValueError(f"ratio {ratio!r} is not a published ratio {RATIOS}: pass the "
                   "bias-conflicting fraction of the training set (0.005 for 99.5% aligned).")


def check_table(name: str, table) -> None:
  """Raises ValueError naming what is wrong if `table` is not a well-formed published table."""
  if not isinstance(table, dict) or set(table) != set(_TABLE_KEYS):
    raise ValueError(f"table {name!r} must be a dict with keys {_TABLE_KEYS}.")
  for key in _TABLE_KEYS[:-1]:
    if not isinstance(table[key], str) or not table[key].strip():
      raise ValueError(f"table {name!r}: {key!r} must say where and what was read.")
  if not isinstance(table["rows"], dict) or not table["rows"]:
    raise ValueError(f"table {name!r} has no methods in 'rows'.")
  for method, cells in table["rows"].items():
    if not isinstance(cells, dict) or sorted(cells) != sorted(RATIOS):
      raise ValueError(f"table {name!r}, {method!r}: needs exactly the ratios {RATIOS}.")
    for ratio, cell in cells.items():
      number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
      if (not isinstance(cell, tuple) or len(cell) != 2 or not number(cell[0])
          or not (cell[1] is None or number(cell[1]))):
        raise ValueError(f"table {name!r}, {method!r} at {ratio}: a cell is (mean, std) in "
                         f"percent, std None where the source prints none; got {cell!r}.")
      mean, std = cell
      if not 0.0 <= mean <= 100.0 or not (std is None or 0.0 <= std < math.inf):
        raise ValueError(f"table {name!r}, {method!r} at {ratio}: mean {mean} must lie in "
                         f"[0, 100] (percent), std {std} must be finite and >= 0.")


def tables() -> dict:
  """A copy of TABLES (editing it leaves the quoted numbers alone)."""
  return copy.deepcopy(TABLES)


def published_accuracy(protocol_method: str, ratio):
  """The published number for "<table id>/<method>" at `ratio`.

  Returns {"mean": %, "std": % or None (not printed), "source": str}, or None when the table is
  known but unquoted (in UNQUOTED). Raises ValueError for a malformed name, an unknown table or
  method, or a ratio that is not one of RATIOS.
  """
  table_id, sep, method = str(protocol_method).partition("/")
  if not sep or not table_id or not method:
    raise ValueError(f"{protocol_method!r}: expected '<table id>/<method>', e.g. "
                     f"'{next(iter(UNQUOTED))}/LfF'.")
  key = _ratio(ratio)
  if table_id in UNQUOTED and table_id not in TABLES:
    return None
  if table_id not in TABLES:
    raise ValueError(f"unknown table {table_id!r}; known: {sorted(TABLES) + sorted(UNQUOTED)}.")
  table = TABLES[table_id]
  if method not in table["rows"]:
    raise ValueError(f"table {table_id!r} lists no method {method!r}; it lists "
                     f"{sorted(table['rows'])}.")
  mean, std = table["rows"][method][key]
  return {"mean": mean, "std": std,
          "source": f"{table['paper']}, {table['table']} (read in {table['source']})"}


def published_ratio(ratio) -> float | None:
  """The entry of RATIOS that `ratio` denotes, or None when it denotes none of them."""
  try:
    return _ratio(ratio)
  except ValueError:
    return None
