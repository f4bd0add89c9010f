"""The benchmark workdir: which training programs a config makes, their configs and their dirs.

  DIR/config.json           the benchmark config (a different config is refused)
  DIR/runs/<protocol>/<model>/rho<rho_train>/<entry>/
                            one training workdir per (protocol, model, ratio, method): its seeds
                            x lambda grid as K replicas (train/runs.py), plus
      benchmark_call_<k>.json  the k-th call that trained it: start, end (a killed call's end,
                            its last epoch's metrics line, is in the next call's file)
      benchmark_time.json   its wall time over those calls, once finished (train stage)
      benchmark_eval.json   per-replica measures (evaluate stage)
      failed.json           why it did not finish (a diverged loss), when it did not
  DIR/cost_probe/<protocol>/<model>/
                            a short ERM run of a model that the cost projection prices but this
                            profile does not train (its measured cost per image)
  DIR/selection.json        the three model selections of every run (select stage)
  DIR/stages.json           wall time of each stage
  DIR/results.json, DIR/benchmark.md, DIR/figures/

A benchmark config (configs/zoo.py) holds `protocols` (data, models, optimizer, epochs),
`run_protocols` (those that run, in order), `zoo` (entry -> method, lambda grid, settings, data
overrides, what it needs), `methods` (the entries that run, in order), `ratios`
(bias-conflicting fractions of train) and `num_seeds`.
"""

import dataclasses
import pathlib

import ml_collections

from ccmnist.train import config as config_lib
from ccmnist.train import methods as methods_lib
from ccmnist.train import runs as runs_lib


@dataclasses.dataclass(frozen=True)
class Run:
  """One training program of the benchmark."""
  protocol: str
  model: str
  ratio: float  # The bias-conflicting fraction of the training set.
  entry: str  # A key of config.zoo.

  @property
  def rho(self) -> float:
    return rho_of(self.ratio)

  @property
  def cell(self) -> str:
    """protocol/model/rho<rho>: the runs that differ in the method alone."""
    return f"{self.protocol}/{self.model}/rho{self.rho:g}"

  @property
  def key(self) -> str:
    return f"{self.cell}/{self.entry}"


def rho_of(ratio: float) -> float:
  """rho_train of a bias-conflicting ratio (0.005 -> 0.995)."""
  return round(1.0 - float(ratio), 6)


def split_names(text: str) -> tuple:
  return tuple(dict.fromkeys(s.strip() for s in str(text).split(",") if s.strip()))


def method_entries(bench) -> tuple:
  """The entries of config.methods (checked against config.zoo), in report order: the rows of
  the report (a family's members are trained and selected with their row's entry)."""
  names = split_names(bench.methods)
  if not names:
    raise ValueError("config.methods is empty; name entries of config.zoo, e.g. "
                     "--config.methods=erm,groupdro.")
  unknown = [n for n in names if n not in bench.zoo]
  if unknown:
    raise ValueError(f"config.methods names {unknown}, not entries of config.zoo; its entries: "
                     f"{', '.join(bench.zoo)}.")
  members = [n for n in names if family_of(bench, n)]
  if members:
    raise ValueError(f"config.methods names {members[0]!r}, a grid of the "
                     f"{family_of(bench, members[0])!r} entry: name that entry instead (its "
                     "family trains with it).")
  return names


def family_of(bench, name: str) -> str:
  """The entry whose grid `name` extends ('' for a row of its own)."""
  return bench.zoo[name].get("family", "")


def members_of(bench, name: str) -> tuple:
  """The entries that extend `name`'s grid (its family, without it), in config.zoo's order;
  none when config.families is off."""
  if not bench.get("families", True):
    return ()
  return tuple(n for n in bench.zoo if family_of(bench, n) == name)


def entry_order(bench, names=None) -> tuple:
  """The entries to train: `names` (default config.methods) and every entry they need,
  each after the entries it needs."""
  out, visiting = [], []

  def visit(name):
    if name in out:
      return
    if name in visiting:
      raise ValueError(f"config.zoo entries need each other in a circle: "
                       f"{' -> '.join(visiting + [name])}.")
    if name not in bench.zoo:
      raise ValueError(f"config.zoo.{visiting[-1]}.needs={name!r} is not an entry of "
                       f"config.zoo; its entries: {', '.join(bench.zoo)}.")
    visiting.append(name)
    if bench.zoo[name].needs:
      visit(bench.zoo[name].needs)
    visiting.pop()
    out.append(name)

  for name in (method_entries(bench) if names is None else names):
    visit(name)
    for member in members_of(bench, name):
      visit(member)
  return tuple(out)


def protocol_names(bench) -> tuple:
  """The protocols of config.run_protocols (checked against config.protocols), in order."""
  names = split_names(bench.run_protocols)
  unknown = [n for n in names if n not in bench.protocols]
  if not names or unknown:
    raise ValueError(f"config.run_protocols={bench.run_protocols!r} must name protocols of "
                     f"config.protocols: {', '.join(bench.protocols)}.")
  return names


def models_of(protocol) -> tuple:
  return split_names(protocol.models)


def cells(bench) -> list:
  """(protocol, model, ratio) of every cell, in report order."""
  return [(p, m, float(r)) for p in protocol_names(bench)
          for m in models_of(bench.protocols[p]) for r in bench.ratios]


def all_runs(bench) -> list:
  """Every Run of the config, in training order (an entry's needs before it, per cell)."""
  order = entry_order(bench)
  return [Run(p, m, r, e) for p, m, r in cells(bench) for e in order]


def run_dir(workdir, run: Run) -> pathlib.Path:
  return pathlib.Path(workdir) / "runs" / run.protocol / run.model / f"rho{run.rho:g}" / run.entry


def probe_dir(workdir, protocol: str, model: str) -> pathlib.Path:
  return pathlib.Path(workdir) / "cost_probe" / protocol / model


def data_config(bench, run: Run) -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict(bench.protocols[run.protocol].data.to_dict())
  d.rho_train = run.rho
  d.update(bench.zoo[run.entry].data.to_dict())
  return d


def epochs(bench, run: Run) -> int:
  """The run's epochs: its entry's share of its protocol's, at least 1."""
  total = bench.protocols[run.protocol].train.epochs
  return max(1, int(round(bench.zoo[run.entry].epochs_fraction * total)))


def warmup_epochs(bench, run: Run) -> int:
  """The run's config.loss.warmup_epochs: its entry's warmup_fraction of its epochs when set
  (base.Benchmark.warmup_of's rounding), else its warmup_epochs."""
  entry = bench.zoo[run.entry]
  return methods_lib.base.warmup_of(entry.get("warmup_fraction", 0.0), epochs(bench, run),
                                    default=entry.warmup_epochs)


def needed_run(bench, run: Run) -> Run | None:
  need = bench.zoo[run.entry].needs
  return dataclasses.replace(run, entry=need) if need else None


def run_config(bench, run: Run, workdir) -> ml_collections.ConfigDict:
  """The ordinary training config (locked) of `run`; a run that needs another gets that run's
  workdir (absolute) in its entry's needs_setting."""
  entry, protocol = bench.zoo[run.entry], bench.protocols[run.protocol]
  settings = entry.settings.to_dict()
  if entry.needs_setting:
    settings[entry.needs_setting] = str(run_dir(workdir, needed_run(bench, run)).resolve())
  grid = tuple(float(x) for x in entry.lam_grid)
  return config_lib.training_config(
      seed=bench.seed, num_seeds=bench.num_seeds, data=data_config(bench, run),
      model=dict(name=run.model),
      loss=dict(name=entry.loss, lam=grid[0] if grid else 0.0, lam_grid=grid,
                warmup_epochs=warmup_epochs(bench, run), settings=settings),
      optim=protocol.optim, train={**protocol.train.to_dict(), "epochs": epochs(bench, run)})


def kind_of(bench, name: str) -> str:
  """The kind of entry `name`: its method's (methods.Method.kind: 'train' or 'refit')."""
  return methods_lib.get(bench.zoo[name].loss).kind


def check_entry(bench, name: str) -> None:
  entry = bench.zoo[name]
  method = methods_lib.get(entry.loss)
  head = family_of(bench, name)
  if head and (head not in bench.zoo or family_of(bench, head)):
    raise ValueError(f"config.zoo.{name}.family={head!r} must name an entry of config.zoo that "
                     "is a row of its own (its family empty).")
  if method.kind == "refit" and not entry.needs:
    raise ValueError(f"config.zoo.{name} refits a trained run: set its needs to the entry of the "
                     "run it refits (e.g. needs='erm').")
  if not 0 < entry.epochs_fraction <= 1:
    raise ValueError(f"config.zoo.{name}.epochs_fraction={entry.epochs_fraction}; use a share "
                     "of the protocol's epochs in (0, 1].")
  if not entry.lam_grid:
    raise ValueError(f"config.zoo.{name}.lam_grid is empty; give at least one point.")
  if entry.needs and bench.zoo[entry.needs].data.to_dict() != entry.data.to_dict():
    raise ValueError(f"config.zoo.{name} needs {entry.needs!r}, whose data overrides differ "
                     f"({bench.zoo[entry.needs].data.to_dict()} vs {entry.data.to_dict()}): a "
                     "needed run must see the same data.")
  if entry.needs_setting and entry.needs_setting in entry.settings:
    raise ValueError(f"config.zoo.{name}.settings.{entry.needs_setting} is set by the benchmark "
                     f"(the workdir of its {entry.needs!r} run); remove it.")
  if method.kind == "train":
    return
  if kind_of(bench, entry.needs) != "train":
    raise ValueError(f"config.zoo.{name} refits the run of {entry.needs!r}, which is not a "
                     "training entry; set its needs to one (e.g. 'erm').")
  unknown = sorted(set(entry.settings) - set(method.defaults))
  if unknown:
    raise ValueError(f"config.zoo.{name}.settings.{unknown[0]} is not a setting of "
                     f"{method.name!r} (its settings: {', '.join(method.defaults)}).")
  split = entry.settings.get("split", method.defaults["split"])
  for p in protocol_names(bench):
    size = bench.protocols[p].data.get(f"{split}_size", 0)
    if not size:
      raise ValueError(f"config.zoo.{name} refits on the held-out split {split!r}, which "
                       f"protocol {p!r} does not hold; set config.protocols.{p}.data."
                       f"{split}_size > 0.")


def check_config(bench, workdir=".") -> None:
  """Fails at once, saying what to fix, on a bad benchmark config: before anything trains."""
  if bench.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be >= 1; got {bench.num_seeds}.")
  if not bench.ratios:
    raise ValueError("config.ratios is empty; give bias-conflicting fractions, e.g. (0.05,).")
  for r in bench.ratios:
    if not 0.0 < float(r) < 1.0:
      raise ValueError(f"config.ratios holds {r}: a bias-conflicting fraction of the training "
                       "set lies in (0, 1), e.g. 0.01 for rho_train 0.99.")
  if len({rho_of(r) for r in bench.ratios}) != len(bench.ratios):
    raise ValueError(f"config.ratios {tuple(bench.ratios)} holds a ratio twice.")
  for p in protocol_names(bench):
    if not models_of(bench.protocols[p]):
      raise ValueError(f"config.protocols.{p}.models is empty; name models, e.g. 'cheater'.")
  for name in entry_order(bench):
    check_entry(bench, name)
  seen = set()
  for run in all_runs(bench):
    if kind_of(bench, run.entry) != "train":
      continue
    key = (run.protocol, run.model, run.entry)  # Ratios change rho alone.
    if key in seen:
      continue
    seen.add(key)
    try:
      runs_lib.check_config(run_config(bench, run, workdir))
    except ValueError as e:
      raise ValueError(f"benchmark run {run.key}: {e}") from None


# Cost probes: a short ERM run per model that the projection prices and this profile does not
# train. Two epochs, so that the second one's rate is free of compiling.
PROBE_TRAIN_SIZE = 2048
PROBE_EPOCHS = 2


def probes(bench) -> list:
  """(protocol, model) pairs that bench.project_to trains and bench does not."""
  target = bench.project_to
  if not len(target):
    return []
  out = []
  for p in protocol_names(target):
    here = set(models_of(bench.protocols[p])) if p in protocol_names(bench) else set()
    out += [(p, m) for m in models_of(target.protocols[p]) if m not in here]
  return out


def probe_config(bench, protocol: str, model: str) -> ml_collections.ConfigDict:
  """The probe run of `model`: ERM on this profile's data of the protocol (or, for a protocol
  this profile lacks, the projected one's), PROBE_TRAIN_SIZE digits, PROBE_EPOCHS epochs, the
  projected profile's optimizer and batch, 2 replicas."""
  target = bench.project_to.protocols[protocol]
  source = bench.protocols[protocol] if protocol in protocol_names(bench) else target
  data = {**source.data.to_dict(), "rho_train": rho_of(bench.ratios[0]),
          "train_size": min(PROBE_TRAIN_SIZE, source.data.train_size)}
  train = {**target.train.to_dict(), "epochs": PROBE_EPOCHS,
           "eval_batch_size": source.train.eval_batch_size,
           "log_every_steps": source.train.log_every_steps,
           "batch_size": min(target.train.batch_size, data["train_size"])}
  return config_lib.training_config(
      seed=bench.seed, num_seeds=2, data=data, model=dict(name=model),
      loss=dict(name="erm", lam_grid=(0.0,)), optim=target.optim, train=train)
