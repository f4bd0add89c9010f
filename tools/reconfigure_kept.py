"""Points a benchmark's folders at a config that trains some methods differently, so that those
methods train again and every other run is kept.

A kept folder (launch.zoo --keep) and its workdir refuse another benchmark's config. When a new
tuning changes the settings of a few methods (tools/tuned_overrides.py), or when some runs must
train again (--retrain: runs trained before the code kept what a stage now reads), this drops
exactly those methods' runs and writes the new config:

  python tools/reconfigure_kept.py --folders=KEPT,WORKDIR --retrain=jtt \\
      --config=configs/zoo.py:full --config.run_protocols=lff ... [--apply]

A method is dropped when its zoo entry differs between the folder's config and the new one, or
--retrain names it, or it needs (zoo `needs`) a dropped method's run; a family's members go with
their row. Anything else that differs (protocols, ratios, seeds, ...) is refused: that is another
benchmark, for a folder of its own. Without --apply it only says what it would drop; with it,
each folder loses those runs and its command.json (the next launch.zoo writes its own), and gets
the new config.json. Rerun the benchmark then: the dropped runs train again.
"""

import json
import pathlib
import shutil

from absl import flags

from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib
from ccmnist.zoo import stages
from launch import common

_CONFIG = common.define_config_file("config", "configs/zoo.py:full")
_FOLDERS = flags.DEFINE_list("folders", None, "The kept folder and the workdir of one benchmark "
                             "(either may be absent on this machine).", required=True)
_RETRAIN = flags.DEFINE_list("retrain", [], "Entries (report rows) to train again even where "
                             "their config is unchanged.")
_APPLY = flags.DEFINE_bool("apply", False, "Drop the runs and write the config; without it, "
                           "only say what would be dropped.")


def changed_entries(old: dict, new: dict, retrain=()) -> dict:
  """{entry: why} of the entries whose runs train again under `new` (module docstring); raises
  ValueError when old and new differ outside the zoo entries."""
  outside = workdir_lib.diff_configs({k: v for k, v in old.items() if k != "zoo"},
                                     {k: v for k, v in new.items() if k != "zoo"},
                                     ignore=stages.IGNORE)
  if outside:
    raise ValueError(f"the configs differ outside their zoo entries ({'; '.join(outside[:3])}): "
                     "that is another benchmark; keep it in a folder of its own.")
  unknown = [e for e in retrain if e not in new["zoo"]]
  if unknown:
    raise ValueError(f"--retrain names {unknown}, not entries of the config's zoo.")
  out = {}
  for name in sorted(set(old["zoo"]) | set(new["zoo"])):
    diff = workdir_lib.diff_configs(old["zoo"].get(name, {}), new["zoo"].get(name, {}))
    if diff:
      out[name] = "its entry differs: " + "; ".join(diff[:2])
  out.update({e: "named by --retrain" for e in retrain if e not in out})
  grown = True
  while grown:  # A family's members with their row, and every run that reads a dropped one.
    grown = False
    for name, entry in new["zoo"].items():
      why = ((entry.get("family") in out and f"a member of {entry['family']}'s family") or
             (entry.get("needs") in out and f"it needs the {entry['needs']} run"))
      if name not in out and why:
        out[name], grown = why, True
  return out


def run_dirs(folder, entries: dict) -> list:
  """The run directories (runs/<protocol>/<model>/rho<rho>/<entry>) of `entries` in a folder."""
  root = pathlib.Path(folder) / "runs"
  return sorted(p for p in root.glob("*/*/*/*") if p.is_dir() and p.name in entries)


def apply(folder, entries: dict, config_text: str) -> list:
  """Drops the runs of `entries` and command.json from a folder and writes config.json; returns
  the dropped run directories. Written last, so that a stop part way leaves the old config,
  which refuses the new one until this runs again."""
  folder = pathlib.Path(folder)
  dropped = run_dirs(folder, entries)
  for path in dropped:
    shutil.rmtree(path)
  (folder / "command.json").unlink(missing_ok=True)
  io.write_text(folder / "config.json", config_text)
  return dropped


def main(argv):
  del argv
  new_text = workdir_lib.config_json(_CONFIG.value)
  new = json.loads(new_text)
  for folder in map(pathlib.Path, _FOLDERS.value):
    old = io.read_json(folder / "config.json")
    if old is None:
      print(f"{folder}: no config.json; nothing to do.")
      continue
    entries = changed_entries(old, new, _RETRAIN.value)
    runs = run_dirs(folder, entries)
    print(f"{folder}: {len(runs)} runs of {len(entries)} entries train again:")
    for name, why in entries.items():
      print(f"  {name}: {why}")
    if _APPLY.value:
      apply(folder, entries, new_text)
      print(f"{folder}: dropped them; config.json is the new config.")
  if not _APPLY.value:
    print("Nothing changed: rerun with --apply.")
  return 0


if __name__ == "__main__":
  common.run(main)
