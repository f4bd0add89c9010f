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
the new config.json. Rerun the benchmark then: the dropped runs train again
(ccmnist/zoo/carry.py, reconfigure).
"""

import json
import pathlib

from absl import flags

from ccmnist.util import io
from ccmnist.util import workdir as workdir_lib
from ccmnist.zoo import carry
from launch import common

_CONFIG = common.define_config_file("config", "configs/zoo.py:full")
_FOLDERS = flags.DEFINE_list("folders", None, "The kept folder and the workdir of one benchmark "
                             "(either may be absent on this machine).", required=True)
_RETRAIN = flags.DEFINE_list("retrain", [], "Entries (report rows) to train again even where "
                             "their config is unchanged.")
_APPLY = flags.DEFINE_bool("apply", False, "Drop the runs and write the config; without it, "
                           "only say what would be dropped.")


def main(argv):
  del argv
  new_text = workdir_lib.config_json(_CONFIG.value)
  new = json.loads(new_text)
  plans = {}  # Every folder is checked before any is changed.
  for folder in map(pathlib.Path, _FOLDERS.value):
    old = io.read_json(folder / "config.json")
    if old is None:
      print(f"{folder}: no config.json; nothing to do.")
      continue
    plans[folder] = carry.entries_to_retrain(old, new, _RETRAIN.value)
    runs = carry.retrain_dirs(folder, plans[folder])
    print(f"{folder}: {len(runs)} runs of {len(plans[folder])} entries train again:")
    for name, why in plans[folder].items():
      print(f"  {name}: {why}")
  for folder, entries in plans.items() if _APPLY.value else ():
    carry.reconfigure(folder, entries, new_text)
    print(f"{folder}: dropped them; config.json is the new config.")
  if not _APPLY.value:
    print("Nothing changed: rerun with --apply.")
  return 0


if __name__ == "__main__":
  common.run(main)
