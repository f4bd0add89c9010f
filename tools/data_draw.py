"""How much of a benchmark number's spread comes from the color draw, beside the training seeds.

Every seed of a benchmark run trains on one color draw (config.protocols.P.data.seed): the
spread over seeds leaves out the data's own variance. This reads K benchmark workdirs that differ
in the data seed alone (each `python -m launch.zoo ... --config.protocols.P.data.seed=D`) and, per
cell of `--entry`, splits the variance of the measure (one-way random effects over draws, seeds
nested in draws): within a draw (training seeds) and between draws, with the one-way ANOVA's F
test of a draw effect. It refuses workdirs whose configs differ in more than the data seed, or
that repeat a draw.

  python tools/data_draw.py --entry=erm DIR_D0 DIR_D1 DIR_D2 ... [--markdown=OUT.md]
"""

import argparse
import json
import pathlib
import re
import sys
import time

import numpy as np
from scipy import stats

# The config keys the workdirs may differ in: the color draw of a protocol's data, and `only`
# (which stages a call ran, not what they computed: launch.zoo lets it change on one workdir).
DRAW_KEY = re.compile(r"protocols\.[^.]+\.data\.seed")
FREE_KEYS = ("only",)


def components(values) -> dict:
  """values [draws, seeds]: {'grand_mean', 'within_sd', 'between_sd', 'draw_means', 'n'}.

  within: the pooled variance of seeds around their draw's mean (ddof 1 per draw); between: the
  variance of the draw means less within / seeds (the random-effects estimate, floored at 0)."""
  v = np.asarray(values, np.float64)
  if v.ndim != 2 or v.shape[0] < 2 or v.shape[1] < 2:
    raise ValueError(f"need >= 2 draws x >= 2 seeds; got shape {v.shape}.")
  means = v.mean(axis=1)
  within = float(v.var(axis=1, ddof=1).mean())
  between = max(float(means.var(ddof=1)) - within / v.shape[1], 0.0)
  f, p = stats.f_oneway(*v)  # H0: every draw has the same mean (no effect of the draw).
  return {"grand_mean": float(v.mean()), "within_sd": within ** 0.5, "between_sd": between ** 0.5,
          "draw_means": means.tolist(), "n": list(v.shape), "f": float(f), "p": float(p),
          "df": [v.shape[0] - 1, v.shape[0] * (v.shape[1] - 1)]}


def _flat(tree, prefix="") -> dict:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
  return out


def check_draws(configs: list, dirs: list) -> None:
  """Raises ValueError unless the benchmark configs differ in their data seeds alone, and no two
  share every seed (the same draw twice would count one draw as two)."""
  flat = [_flat(c) for c in configs]
  for f, d in zip(flat[1:], dirs[1:]):
    diff = sorted(k for k in set(f) | set(flat[0])
                  if not DRAW_KEY.fullmatch(k) and k not in FREE_KEYS
                  and f.get(k) != flat[0].get(k))
    if diff:
      raise ValueError(f"{d} differs from {dirs[0]} in more than the data seed "
                       f"({', '.join(diff[:3])}); compare workdirs that differ in the color "
                       "draw alone.")
  draws = [tuple(sorted((k, v) for k, v in f.items() if DRAW_KEY.fullmatch(k))) for f in flat]
  for i, a in enumerate(draws):
    if a in draws[:i]:
      raise ValueError(f"{dirs[i]} and {dirs[draws.index(a)]} hold the same color draw "
                       f"({dict(a)}); give each workdir its own data seed.")


def cell_values(results: list, entry: str, measure: str, way: str) -> dict:
  """{cell: [draws][seeds] values of `measure` at `way`} of `entry` in every results.json."""
  out = {}
  for res in results:
    for key, run in res["runs"].items():
      if run["entry"] != entry or not (run.get("selection") or {}).get(way):
        continue
      cell = key.rsplit("/", 1)[0]
      out.setdefault(cell, []).append(run["selection"][way]["measures"][measure]["values"])
  return out


def markdown(rows: dict, *, entry: str, measure: str, way: str, dirs: list,
             made_by: str = "") -> str:
  lines = [f"# {entry}: color draw vs training seed", "",
           f"{measure} ({way}-selected), one-way random effects over {len(dirs)} color draws "
           "(the data seed), training seeds nested in each draw; in points. F: one-way ANOVA "
           "of the draws (scipy.stats.f_oneway; H0: every draw has the same mean).", "",
           "| cell | draws x seeds | mean | SD within a draw (seeds) | SD between draws | "
           "F (df), p | draw means |", "|---|---|---|---|---|---|---|"]
  for cell, c in rows.items():
    lines.append(f"| {cell} | {c['n'][0]} x {c['n'][1]} | {100 * c['grand_mean']:.1f} | "
                 f"{100 * c['within_sd']:.1f} | {100 * c['between_sd']:.1f} | "
                 f"{c['f']:.2f} ({c['df'][0]}, {c['df'][1]}), {c['p']:.2g} | "
                 + ", ".join(f"{100 * m:.1f}" for m in c["draw_means"]) + " |")
  lines += ["", "Workdirs: " + ", ".join(f"`{d}`" for d in dirs) + ".", ""]
  if made_by:
    lines += [made_by, ""]
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("workdirs", nargs="+")
  p.add_argument("--entry", default="erm")
  p.add_argument("--measure", default="group_balanced")
  p.add_argument("--selection", default="val")
  p.add_argument("--markdown", default="", help="Also write the table here.")
  a = p.parse_args(argv)
  results = [json.loads((pathlib.Path(d) / "results.json").read_text()) for d in a.workdirs]
  check_draws([r["config"] for r in results], a.workdirs)
  rows = {cell: components(v) for cell, v in
          cell_values(results, a.entry, a.measure, a.selection).items()}
  codes = sorted({str(r.get("environment", {}).get("code")) for r in results})
  args = " ".join(sys.argv[1:] if argv is None else argv)
  made_by = (f"Made by `python tools/data_draw.py {args}` on {time.strftime('%Y-%m-%d')}, from "
             f"benchmark runs on code {', '.join(codes)}.")
  text = markdown(rows, entry=a.entry, measure=a.measure, way=a.selection, dirs=a.workdirs,
                  made_by=made_by)
  print(text)
  if a.markdown:
    pathlib.Path(a.markdown).write_text(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
