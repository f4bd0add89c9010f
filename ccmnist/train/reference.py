"""A method's reference run: the finished run it reads (JTT's error sets, EIIL's logits).

A method that reads one names the setting that holds its workdir (methods.Method.reference).
The training loop loads it here, checks it trained on the same data with every seed the run
needs, and hands the method a Reference: the method reads the run through it and imports no
workdir code. Replica r reads the reference replica with its seed, at the reference's headline
lambda, so each seed has its own reference.
"""

import dataclasses
import json

from ccmnist.data import splits as splits_lib
from ccmnist.train import methods
from ccmnist.train import replicas as replicas_lib
from ccmnist.train import runs


@dataclasses.dataclass(frozen=True)
class Reference:
  """A finished reference run: its workdir, config, and the replica of each seed."""
  workdir: str
  config: object
  by_seed: dict  # seed -> the reference replica with that seed, at its headline lambda.

  def replicas_of(self, reps) -> list:
    """The reference replica of each of `reps` ({'seed'} dicts), by seed."""
    return [self.by_seed[r["seed"]] for r in reps]

  def predictions(self, split: str):
    """int8 [K_ref, n]: the reference's final predictions on `split`, or None when it has
    none."""
    return runs.load_predictions(self.workdir).get(split)

  def load(self) -> tuple:
    """(model, stacked params [K_ref, ...]) of the reference's latest checkpoint."""
    model, params, _ = runs.load_run(self.workdir, replica=None)
    return model, params


def _data_fields(data) -> dict:
  """The data-config fields that decide the arrays, JSON-normalized (tuples -> lists)."""
  return json.loads(json.dumps({k: splits_lib.field(data, k) for k in splits_lib.KEY_FIELDS},
                               default=str))


def load(config) -> Reference | None:
  """The Reference of a run whose method reads one, else None.

  ValueError, saying what to fix, when the reference is missing, trained on other data or
  lacks a seed of the run.
  """
  method = methods.get(config.loss.name)
  if not method.reference:
    return None
  ref = str(methods.settings_of(config)[method.reference])
  try:
    ref_config = runs.load_config(ref)
  except FileNotFoundError as e:
    raise ValueError(f"config.loss.settings.{method.reference}: {e}") from None
  mine, theirs = _data_fields(config.data), _data_fields(ref_config.data)
  diff = [f"{k}: {theirs[k]!r} (reference) vs {mine[k]!r}" for k in mine if mine[k] != theirs[k]]
  if diff:
    raise ValueError(f"The reference run {ref} trained on other data ({'; '.join(diff[:3])}); "
                     "train the reference with this run's config.data.")
  head = replicas_lib.headline_lam(ref_config)
  by_seed = {r["seed"]: r["replica"] for r in replicas_lib.replicas(ref_config)
             if r["lam"] == head}
  missing = sorted({r["seed"] for r in replicas_lib.replicas(config)} - set(by_seed))
  if missing:
    raise ValueError(f"The reference run {ref} has no replica with seed {missing[0]} (its seeds: "
                     f"{', '.join(map(str, sorted(by_seed)))}); train it with config.seed="
                     f"{config.seed} and config.num_seeds={config.num_seeds}.")
  return Reference(workdir=ref, config=ref_config, by_seed=by_seed)


def init_extra(config, train_split) -> dict:
  """runs.init_extra with the method's reference run loaded (when it reads one)."""
  return runs.init_extra(config, train_split, load(config))
