"""A workdir belongs to one config: config.json is written once and checked on every resume."""

import json
import pathlib

import ml_collections

from ccmnist.util import io


class WorkdirConfigError(ValueError):
  """The workdir holds a run of a different config."""


def config_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def _diff(a: dict, b: dict, prefix="") -> list:
  out = []
  for k in sorted(set(a) | set(b)):
    va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
    if isinstance(va, dict) and isinstance(vb, dict):
      out += _diff(va, vb, f"{prefix}{k}.")
    elif va != vb:
      out.append(f"{prefix}{k}: {va!r} (workdir) vs {vb!r} (now)")
  return out


def claim_workdir(config, workdir, *, ignore: tuple = ()) -> pathlib.Path:
  """Writes config.json, or checks that the one there is the same config.

  ignore: top-level keys that select what to run rather than what is computed (the study's
  `only`): they may differ between runs on one workdir.
  """
  workdir = pathlib.Path(workdir)
  path = workdir / "config.json"
  text = config_json(config)
  if path.exists():
    try:
      old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise WorkdirConfigError(f"{path} is not valid JSON ({e}); use a new --workdir.") from e
    diff = _diff({k: v for k, v in old.items() if k not in ignore},
                 {k: v for k, v in json.loads(text).items() if k not in ignore})
    if diff:
      raise WorkdirConfigError(
          f"{workdir} holds a run of a different config:\n  " + "\n  ".join(diff[:20]) +
          "\nUse a new --workdir, or rerun with the same config to resume.")
  else:
    io.write_text(path, text)
  return workdir


def load_config(workdir, *, kind: str = "training") -> ml_collections.ConfigDict:
  """The config.json of a workdir, as a ConfigDict."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a {kind} workdir.")
  return ml_collections.ConfigDict(json.loads(path.read_text()))
