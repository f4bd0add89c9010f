"""The debiasing benchmark: every method of the zoo x two data protocols x bias-conflicting ratios.

  python -m launch.zoo --config=configs/zoo.py:quick --workdir=/tmp/ccmnist/bench_quick
  python -m launch.zoo --config=configs/zoo.py:full --workdir=/tmp/ccmnist/bench_full
  python -m launch.zoo --config=configs/zoo.py:quick --config.methods=erm,groupdro \
      --workdir=DIR
  python -m launch.zoo --config=configs/zoo.py:quick --config.only=train --workdir=DIR

Each training program is one (protocol, model, ratio, method) with its seeds x lambda grid as K
replicas; a run DIR/runs/<protocol>/<model>/rho<rho_train>/<entry>/ is an ordinary training
workdir. Stages: train -> evaluate -> select -> analyse -> report (DIR/benchmark.md,
DIR/results.json).

Protocols:
  study  the study's data: stroke coloring on a noisy grey background, its palette; Adam lr 1e-3,
         batch 64 (the optimizer the study's own debiasing run trains with: with the study's
         plain SGD at lr 1e-3 plain ERM does not leave its initial plateau, which would make
         every method look like an optimizer effect); CheaterCNN (full: also ShapeCNN and MLP).
  lff    LfF / DFA's Colored MNIST: the digit times a jittered color on black; their MLP 3x100,
         and their optimizer, batch and epochs (ccmnist/zoo/published.py, PROTOCOLS).
Every protocol evaluates: test_easy at rho 0.1 (colors uniform: the UNBIASED test set), test_hard
(rho 0: every color conflicts), val (held out, colored like train), val_unbiased (small, rho 0.1:
the group-labelled set the group_val selection reads) and val_balanced (rho 0.5: the held-out set
DFR refits on). Each method's headline number is read under the selection rule that matches
what it may know (ccmnist/zoo/entries.py, headline_rule).

Sizes: 'full' the benchmark (5 seeds, ratios 5%, 2%, 1%, 0.5%, 2-3 grid points per method with
a hyper-parameter, 52,000 training digits, the study's 10 epochs and LfF's 100); 'quick' checks
the whole benchmark (every method, both protocols, the three selections, the analyses) in
minutes on a 2-core CPU, and is not a result to cite: 2 seeds, the ratio 1% alone, 1-2 grid
points, 10,000 training digits, the CheaterCNN alone in the study protocol, 13 epochs there (about
2,000 steps of 64: the study protocol's ERM is past its initial plateau, so its ranking is not
of undertrained runs) and 12 in LfF's; the full profile's other models are priced by a short
cost probe each; 'tiny' synthetic digits, for tests. The held-out splits are evaluated after
every fifth of a run's epochs and its last (train.eval_every_epochs); each of these epochs keeps
its predictions and checkpoint, so that the methods of config.stop_early are read where each
seed's selection stops it, and the others at their last epoch.
"""

import ml_collections

from ccmnist.train import methods
from ccmnist.train.methods import groupdro
from ccmnist.zoo import published
from configs import common

# Bias-conflicting fraction of the training set; rho_train = 1 - ratio.
# Quick: one ratio, so that the study protocol trains past its plateau within minutes.
RATIOS = {"full": (0.05, 0.02, 0.01, 0.005), "quick": (0.01,), "tiny": (0.05,)}
SEEDS = {"full": 5, "quick": 2, "tiny": 2}
# Held-out digits (from MNIST's training set) and the test digits.
SIZES = {
    "full": dict(train_size=52_000, val_size=5_000, val_unbiased_size=1_000,
                 val_balanced_size=2_000, test_size=10_000),
    "quick": dict(train_size=10_000, val_size=1_000, val_unbiased_size=500,
                  val_balanced_size=1_000, test_size=2_000),
    "tiny": dict(train_size=400, val_size=60, val_unbiased_size=40, val_balanced_size=60,
                 test_size=100),
}
def _entry(loss, grid=(0.0,), *, title="", settings=None, data=None, needs="", needs_setting="",
           warmup_epochs=0, warmup_fraction=0.0, epochs_fraction=1.0, knows="", oracle=False,
           family="", label=""):
  """One entry of the benchmark's table.

  loss: its config.loss.name (a method of the registry; its kind, methods.Method.kind, says
  whether the entry trains or refits a trained run); grid: its lambda grid (what lambda means:
  the method's lam_means); settings: config.loss.settings; data: data-config overrides (the
  grayscale oracle's); needs: an entry whose run (same protocol, model, ratio, data and seeds)
  is trained first (the run a refit refits); needs_setting: the setting that receives that
  run's workdir ('' when none does); warmup_epochs: config.loss.warmup_epochs, or, when
  warmup_fraction > 0, that share of the run's epochs (base.Benchmark.warmup_of); epochs_fraction:
  the share of the protocol's epochs the run trains (an identification run's early stop);
  knows: what it knows about the bias when not its method's `knows` (data overrides know
  something too); oracle: it knows what no practitioner does (the report ranks it apart);
  family: the entry whose row this one's grid extends (a second hyper-parameter: Group DRO's L2
  strength, JTT's identification epochs): trained with it, selected together with it (select
  picks over both grids), never a row of its own; label: how its points are told apart from
  the family's others ('L2 0.01').
  """
  return ml_collections.ConfigDict(dict(
      loss=loss, lam_grid=tuple(float(g) for g in grid), title=title or loss,
      settings=ml_collections.ConfigDict(settings or {}),
      data=ml_collections.ConfigDict(data or {}), needs=needs, needs_setting=needs_setting,
      warmup_epochs=warmup_epochs, warmup_fraction=warmup_fraction,
      epochs_fraction=epochs_fraction, knows=knows,
      oracle=oracle, family=family, label=label))


# Methods that know what no practitioner does, ranked apart from the others: random recoloring
# is told that the bias is color and how the data colors a digit, and never sees a biased color.
ORACLE_METHODS = ("random_recolor",)


def method_entries(size: str) -> dict:
  """{name: _entry} of every registered method with a benchmark entry (methods.Method.benchmark:
  its title, grids, warmup and needs, declared in its module), in the registry's order; those of
  ORACLE_METHODS marked oracle."""
  out = {}
  for name, method in methods.METHODS.items():
    b = method.benchmark
    if b is not None:
      out[name] = _entry(name, b.grid_of(size), title=b.title, needs=b.needs,
                         needs_setting=method.reference, warmup_epochs=b.warmup_epochs,
                         warmup_fraction=b.warmup_fraction,
                         oracle=name in ORACLE_METHODS)
  return out


# The entries that are not a method of their own, after the methods in report order.
EXTRA = ("grayscale",)


def zoo(size: str) -> ml_collections.ConfigDict:
  """The table of a size: entry name -> _entry(...): every method's (method_entries), and the
  grayscale oracle and the identification run.

  Each quick grid is a subset of the full one; a method whose lambda is unused has one point.
  """
  z = ml_collections.ConfigDict(method_entries(size))
  z.grayscale = _entry("erm", title="grayscale oracle (ERM on grey digits)",
                       data={"grayscale": True}, oracle=True,
                       knows="that the bias is color: train and test digits are made grey")
  # Not a method: the ERM run that JTT reads its error set from, trained for a fifth of the
  # epochs (JTT's early-stopped identification model). EIIL reads the cell's full ERM run.
  z.identify = _entry("erm", title="ERM identification run (JTT)", epochs_fraction=0.2)
  if size == "full":
    _second_grids(z, size)
  return z


# The second hyper-parameter of a method, as family entries of its row (the full profile only):
# Group DRO's L2 strength (its paper's regime: strong L2 or early stopping), and JTT's
# identification epochs T as a share of the protocol's (its paper's T range from 1 of 50
# epochs to 2 of 5).
GROUPDRO_L2 = tuple(l2 for l2 in groupdro.L2_GRID if l2)
JTT_T = (0.02, 0.4)  # Beside `identify`'s 0.2.


def _second_grids(z, size: str) -> None:
  """Adds the family entries of GROUPDRO_L2 and JTT_T to the table `z`."""
  dro = methods.get("groupdro").benchmark
  z.groupdro.settings = ml_collections.ConfigDict({"l2": 0.0})  # Named: a tuned run sets it.
  for l2 in GROUPDRO_L2:
    z[f"groupdro_l2_{l2:g}".replace(".", "p").replace("-", "m")] = _entry(
        "groupdro", dro.grid_of(size), title=f"{dro.title}, L2 {l2:g}", settings={"l2": l2},
        family="groupdro", label=f"L2 {l2:g}")
  jtt = methods.get("jtt").benchmark
  for t in JTT_T:
    name = f"{t:g}".replace(".", "p")
    z[f"identify_t{name}"] = _entry("erm", title=f"ERM identification run, T {t:g}",
                                    epochs_fraction=t)
    z[f"jtt_t{name}"] = _entry("jtt", jtt.grid_of(size), title=f"{jtt.title}, T {t:g}",
                               needs=f"identify_t{name}", needs_setting="reference",
                               family="jtt", label=f"T {t:g}")


# Every entry of the benchmark, in report order: the registry's methods, then EXTRA.
ZOO = tuple(method_entries("full")) + EXTRA


def _protocol(size: str, *, title, data, models, optim, train, follows=""):
  return ml_collections.ConfigDict(dict(
      title=title, data=data, models=models, optim=ml_collections.ConfigDict(optim),
      train=ml_collections.ConfigDict(train), follows=follows))


def _data(size: str, **overrides) -> ml_collections.ConfigDict:
  d = common.data_config(None if size == "full" else size)
  d.update(SIZES[size])
  d.rho_test_easy = 0.1  # Uniform colors: the unbiased test set.
  d.rho_test_hard = 0.0
  d.update(overrides)
  return d


def _train(epochs: int, batch_size: int, size: str) -> dict:
  return dict(epochs=epochs, batch_size=batch_size,
              eval_batch_size=50 if size == "tiny" else 1000,
              log_every_steps=8 if size == "tiny" else 1000, data_parallel=False,
              eval_train_every_epoch=False,
              # Five points per curve, and where an early-stopped run may stop.
              eval_every_epochs=max(1, epochs // 5),
              grad_norm=False)  # Nothing in the benchmark reads it; it costs (docs/perf.md).


def protocols(size: str) -> ml_collections.ConfigDict:
  lff = published.PROTOCOLS["lff"]
  p = ml_collections.ConfigDict()
  p.study = _protocol(
      size, title="the study's data (stroke coloring on a noisy grey background)",
      data=_data(size),
      models="cheater,shape_cnn,mlp" if size == "full" else "cheater",
      optim=dict(name="adam", lr=1e-3, momentum=0.0, weight_decay=0.0, schedule="constant",
                 warmup_steps=0),
      train=_train({"full": 10, "quick": 13, "tiny": 2}[size], 64 if size != "tiny" else 32, size))
  p.lff = _protocol(
      size, title="LfF / DFA Colored MNIST (jittered color on black, MLP 3x100)",
      data=_data(size, coloring="lff"), models="lff_mlp",
      optim=dict(name=lff["optimizer"].lower(), lr=lff["lr"], momentum=0.0,
                 weight_decay=lff["weight_decay"], schedule=lff["lr_schedule"], warmup_steps=0),
      train=_train({"full": lff["epochs"], "quick": 12, "tiny": 3}[size],
                   lff["batch_size"] if size != "tiny" else 32, size),
      follows="lff")
  return p


def build(size: str) -> ml_collections.ConfigDict:
  """The unlocked benchmark config of a size (one of common.SIZES)."""
  c = ml_collections.ConfigDict()
  c.size = size
  c.seed = 0
  c.num_seeds = SEEDS[size]
  c.only = ""  # A comma-separated list of stages ('train,evaluate'); '' runs them all.
  c.methods = ",".join(ZOO)  # The entries of `zoo` to run and report, in order.
  # Whether an entry's family (its second grid: zoo's `family` entries) trains with it; off for a
  # run at settings tuned before (tools/tuned_overrides.py).
  c.families = True
  # The entries read at each seed's best evaluated epoch on its selection's split instead of the
  # last (the methods whose paper stops early, methods.Benchmark.stop_early); the select stage
  # reads it, so it may change on a trained workdir (--config.only=evaluate,select,analyse,report).
  c.stop_early = ",".join(n for n, m in methods.METHODS.items()
                          if m.benchmark is not None and m.benchmark.stop_early)
  c.ratios = RATIOS[size]
  c.run_protocols = "study,lff"  # The protocols of `protocols` to run and report, in order.
  c.protocols = protocols(size)
  c.zoo = zoo(size)
  # Which full-size runs the cost projection prices (from this profile's measured costs).
  c.project_to = ml_collections.ConfigDict()
  c.analyse = analyse(size)
  return c


def analyse(size: str) -> ml_collections.ConfigDict:
  """The analyse stage (ccmnist/zoo/analyse.py): did a method remove the color shortcut?

  num_digits test digits (balanced over the classes) with their recolored twins; probes by
  `folds`-fold cross-validation (ridge alpha, pooling grid x grid); the null: null_inits random
  inits (keys null_seed, ...); targeted PGD (the study's attack, `pgd`: Attack's arguments) on
  the first num_attack digits of the target rule (attacks/sweep.py select_examples; 0: no
  robustness measures), minimal epsilon by bisection on [0, eps_max] (argmax criterion), the
  color-shift share at pgd.eps.
  """
  return ml_collections.ConfigDict(dict(
      num_digits={"full": 500, "quick": 200, "tiny": 40}[size],
      num_attack={"full": 100, "quick": 50, "tiny": 10}[size],
      null_inits=3, null_seed=1000, seed=0, folds=5, alpha=1e-2, grid=2,
      batch_size={"full": 250, "quick": 200, "tiny": 40}[size],
      targets=ml_collections.ConfigDict(dict(rule="shift", shift=1, target=3, source=7)),
      pgd=ml_collections.ConfigDict(dict(
          # Tiny: 5 steps of 6 travel 30 pixel levels, as 30 steps of 1.5 travel 45 (eps_max 30).
          norm="linf", eps=12.75, step_size=6.0 if size == "tiny" else 1.5,
          steps=5 if size == "tiny" else 30,
          random_start=True, loss="ce", restarts=1, targeted=True, step_size_rel=0.0)),
      min_eps=ml_collections.ConfigDict(dict(eps_max=30.0, iters=4 if size == "tiny" else 10)),
      anatomy=ml_collections.ConfigDict(dict(stroke_threshold=30.0, null_seed=0))))


def get_config(arg=None):
  size = common.parse_arg(arg).size
  c = build(size)
  full = build("full")
  c.project_to = ml_collections.ConfigDict(dict(
      num_seeds=full.num_seeds, methods=full.methods, ratios=full.ratios,
      run_protocols=full.run_protocols, protocols=full.protocols, zoo=full.zoo))
  c.lock()
  return c
