"""The config overrides that train a benchmark at the settings a tuning run chose.

A two-step protocol for a grid too costly to run at every ratio with every seed: tune each
method's hyper-parameters (its lambda grid and its family's second grid) at one ratio with a
few seeds, then train the chosen setting at every ratio with more seeds:

  python -m launch.zoo --config=configs/zoo.py:full --config.run_protocols=lff \\
      --config.project_to.run_protocols=lff --config.ratios=0.01 --config.num_seeds=2 \\
      --workdir=TUNE
  python -m launch.zoo --config=configs/zoo.py:full --config.run_protocols=lff \\
      --config.project_to.run_protocols=lff \\
      $(python tools/tuned_overrides.py TUNE) --workdir=FINAL

Each entry takes the point its headline selection rule chose in TUNE's one cell (the rule that
matches what the method may know: zoo/entries.py `headline_rule`): its lambda, and, when that
point belongs to a family member (Group DRO's L2, JTT's T), that member's settings and needed
run; families are then switched off (--config.families=False). A refit's needed run keeps its
own choice.
"""

import argparse
import json
import pathlib
import sys

import ml_collections

from ccmnist.zoo import entries
from ccmnist.zoo import plan


def overrides(bench, results: dict) -> list:
  """['--config.zoo.E.lam_grid=(x,)', ...] for every row entry of the tuned config `bench` from
  its results.json record; refuses a tuning run of more than one cell."""
  cells = {key.rsplit("/", 1)[0] for key in results["runs"]}
  if len(cells) != 1:
    raise ValueError(f"the tuning run holds {len(cells)} cells ({sorted(cells)}); tune at one "
                     "protocol, model and ratio.")
  (cell,) = cells
  out = []
  for name in plan.method_entries(bench):
    run = results["runs"].get(f"{cell}/{name}") or {}
    sel = (run.get("selection") or {}).get(entries.headline_rule(bench, name))
    if not sel:
      raise ValueError(f"{cell}/{name} has no {entries.headline_rule(bench, name)} selection "
                       "in the tuning run; let it finish (or drop the entry with "
                       "--config.methods).")
    out.append(f"--config.zoo.{name}.lam_grid=({sel['lam']!r},)")
    member = sel.get("entry")
    if member and member != name:
      m = bench.zoo[member]
      out += [f"--config.zoo.{name}.settings.{k}={v!r}" for k, v in m.settings.items()]
      if m.needs != bench.zoo[name].needs:
        out.append(f"--config.zoo.{name}.needs={m.needs}")
  return out + ["--config.families=False"]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("tune_workdir")
  a = p.parse_args(argv)
  workdir = pathlib.Path(a.tune_workdir)
  bench = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  print(" ".join(overrides(bench, json.loads((workdir / "results.json").read_text()))))
  return 0


if __name__ == "__main__":
  sys.exit(main())
