"""Shared pieces of every config: variant parsing, the data settings, a training-run skeleton."""

import ml_collections

from ccmnist.train import config as config_lib

SIZES = ("full", "quick", "tiny")


def parse_arg(arg, **choices) -> ml_collections.ConfigDict:
  """The variant a config is asked for: `file.py:ARG`, ARG a comma-separated list of tokens.

  Each keyword names a field and its allowed values, the first being the default; every config
  has `size` (full: the study's settings, quick: minutes on a laptop CPU, tiny: tests). A token
  is `field=value` or a bare value, which sets the one field that allows it:
  parse_arg('momentum,quick', optimizer=('adam', 'momentum')) -> size='quick',
  optimizer='momentum'.
  """
  choices = {"size": SIZES, **choices}
  out = ml_collections.ConfigDict({k: v[0] for k, v in choices.items()})
  usage = "; ".join(f"{k}: {'|'.join(v)}" for k, v in choices.items())
  for token in filter(None, (t.strip() for t in str(arg or "").split(","))):
    key, sep, value = token.rpartition("=")
    fields = [key] if sep else [k for k, v in choices.items() if value in v]
    if len(fields) != 1 or fields[0] not in choices or value not in choices[fields[0]]:
      raise ValueError(f"Unknown config variant {token!r} in {arg!r}; use a comma-separated "
                       f"list of ({usage}), e.g. 'quick'.")
    out[fields[0]] = value
  return out


def data_config(size: str | None = "full") -> ml_collections.ConfigDict:
  """The study's data: foreground stroke coloring, rho 0.95 train, hard test never aligned.

  size: one of SIZES (None is 'full'); 'tiny' uses synthetic digits.
  """
  c = ml_collections.ConfigDict()
  c.source = "mnist"  # or 'synthetic': tiny bar digits for smoke tests, no MNIST needed.
  c.data_dir = ""  # A directory of MNIST IDX files; empty: $CCMNIST_DATA_DIR, cache, mirror.
  # 'foreground', 'background', or 'lff': LfF/DFA's Colored MNIST (the digit times a jittered
  # color on black; no noise_sigma or bg_low/bg_high; ccmnist/data/coloring.py).
  c.coloring = "foreground"
  c.palette = None  # None: the mode's palette (LfF's for 'lff'); else 10 RGB triples.
  c.color_std = 0.005  # 'lff' only: the per-image color jitter std (LfF severity 4).
  c.grayscale = False  # True: every image made grey after coloring (the grayscale oracle).
  c.rho_train = 0.95
  c.rho_test_easy = 0.95
  c.rho_test_hard = 0.0
  c.noise_sigma = 0.02
  c.bg_low = 0.3
  c.bg_high = 0.6
  c.seed = 0  # Colors, backgrounds and noise; separate from the training seed.
  c.train_size = 60_000
  c.test_size = 10_000
  c.val_size = 0  # Held out from the training digits, colored like train (rho_train).
  c.val_unbiased_size = 0  # Held out too, uniformly random colors (rho 0.1).
  c.val_balanced_size = 0  # Held out too, half aligned (rho 0.5): group-balanced subsets (DFR).
  if size == "tiny":
    c.source = "synthetic"
    c.train_size, c.test_size = 512, 100
  return c


def train_config(size: str | None = "full") -> ml_collections.ConfigDict:
  """A training run with the cheater model, plain ERM and the study's optimizer (unlocked).

  size: one of SIZES (None is 'full').
  """
  size = size or "full"
  if size not in SIZES:
    raise ValueError(f"Unknown size {size!r}; use one of {SIZES}.")
  # Its fields: ccmnist/train/config.py.
  c = config_lib.training_config(
      seed=0, num_seeds=1, data=data_config(size), model=dict(name="cheater"),
      optim=dict(name="sgd", lr=1e-3, momentum=0.0, weight_decay=0.0, schedule="constant",
                 warmup_steps=0),
      train=dict(
          epochs=10, batch_size=64, eval_batch_size=1000, log_every_steps=200,
          data_parallel=False,  # True: each batch split over every device (train/parallel.py).
          # The test and validation splits are evaluated after every epoch; the train split,
          # which costs as much as both test sets, after the last one only unless this is True.
          eval_train_every_epoch=False),
      lock=False)
  if size == "quick":
    # Plain SGD at the study's lr 1e-3 stays on its initial plateau for the ~1k steps a quick
    # run has; 10x the rate keeps lr x steps near the full run's.
    c.data.train_size = 20_000
    c.data.test_size = 5_000
    c.train.epochs = 3
    c.optim.lr = 1e-2
  elif size == "tiny":
    c.train.epochs = 2
    c.train.batch_size = 32
    c.train.eval_batch_size = 50
    c.train.log_every_steps = 8
  return c
