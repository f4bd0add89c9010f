"""Measured statements of the benchmark, each between two runs that differ in one thing, paired
by seed and tested with report/verdicts.py's paired t-test; the comparisons of one protocol form
one family, Holm-corrected (comparisons of identical runs counted once). They read the collected
records (collect.py).
"""

import numpy as np

from ccmnist.report import markdown
from ccmnist.report import verdicts
from ccmnist.zoo import entries
from ccmnist.zoo import plan

pct = markdown.percent


def _selection(res, key: str, way: str = "val"):
  """Run `key`'s `way`-selected record, or None."""
  run = res["runs"].get(key)
  return run and run.get("selection") and run["selection"].get(way)


def _values(res, key: str, way: str = "val", measure: str = "unbiased"):
  """Per-seed `measure` of run `key` at its `way`-selected point; None if any is missing."""
  sel = _selection(res, key, way)
  if not sel:
    return None
  values = sel["measures"][measure]["values"]
  return None if any(v is None for v in values) else values


def _test(f: dict) -> tuple:
  """(paired test, direction, one-seed sampling floor) of a comparison's stored values."""
  a, b = f["a_values"], f["b_values"]
  test = verdicts.paired_test(a, b)
  sampling = (verdicts.sampling_se(float(np.mean(a)), float(np.mean(b)), f["test_items"])
              if test["n"] == 1 and f["test_items"] else None)
  return test, 1, sampling


def judge(fs: list) -> list:
  """Comparisons judged as one family (Holm over them; see verdicts.judge)."""
  return verdicts.judge(fs, [_test(f) for f in fs])


def compare(res, key_a: str, key_b: str, *, differ_in: str, kind: str, way: str = "val",
            measure: str = "unbiased", n_items: int | None = None) -> dict | None:
  """The paired seed difference b - a of `measure` at each run's `way`-selected grid point, and
  its verdict judged alone (holds True: b is ahead, False: a is ahead, None: not resolved);
  findings() judges it again within its protocol's family. None when either run has no
  numbers."""
  a, b = _values(res, key_a, way, measure), _values(res, key_b, way, measure)
  if a is None or b is None or len(a) != len(b):
    return None
  test = verdicts.paired_test(a, b)
  f = {"kind": kind, "a": key_a, "b": key_b, "differ_in": differ_in, "measure": measure,
       "selection": way, "a_mean": float(np.mean(a)), "b_mean": float(np.mean(b)),
       "diff": {k: test[k] for k in ("mean", "n", "values")},
       "a_values": list(a), "b_values": list(b),
       "a_seeds": _selection(res, key_a, way).get("seeds"),
       "b_seeds": _selection(res, key_b, way).get("seeds"), "test_items": n_items}
  return judge([f])[0]


def _mean(res, key, way="val", measure="unbiased"):
  """The seed-mean of _values, or None."""
  v = _values(res, key, way, measure)
  return None if v is None else float(np.mean(v))


def findings(res, bench) -> list:
  """Measured statements, each between two runs that differ in one thing (see compare), on
  group-balanced accuracy (the papers' metric), judged per protocol as one Holm family after
  comparisons of identical runs are merged (dedupe):

  per cell (protocol, model, ratio), methods ranked at their headline selection rule
  (entries.headline_rule): the leader vs the runner-up and vs ERM (the method alone),
  the best method told nothing of the bias vs ERM and vs the best given group labels,
  counterfactual consistency vs its augmentation-only ablation (the loss alone), each oracle
  (grayscale, random recoloring) vs the leader (oracle entries are ranked apart); per protocol
  and model: ERM at the largest vs the smallest ratio (the ratio alone). Both runs of a pair are
  read under one rule, so that only the method differs: their shared headline rule, else
  group_val (a group-labelled val set every run can be selected on). The pairs are chosen after
  ranking."""
  names = [n for n in plan.method_entries(bench)]
  oracle = {n for n in names if bench.zoo[n].oracle}
  rule = {n: entries.headline_rule(bench, n) for n in names}
  measure = "group_balanced"
  out = []
  for protocol, model, ratio in plan.cells(bench):
    cell = plan.Run(protocol, model, ratio, "").cell
    n_test = bench.protocols[protocol].data.test_size
    key = lambda e, cell=cell: f"{cell}/{e}"
    score = lambda n, key=key: _mean(res, key(n), rule[n], measure)
    ranked = sorted((n for n in names if n not in oracle and score(n) is not None),
                    key=lambda n: -score(n))
    pairs = []
    if len(ranked) >= 2:
      pairs.append((ranked[1], ranked[0], "the method", "lead"))
    if ranked and "erm" in ranked and ranked[0] != "erm" and ranked[1:2] != ["erm"]:
      pairs.append(("erm", ranked[0], "the method", "over_erm"))
    unaware = [n for n in ranked if n != "erm" and entries.told(bench, n) == "nothing"]
    if "erm" in ranked and unaware and ranked[0] != unaware[0]:  # The best told nothing.
      pairs.append(("erm", unaware[0], "the method, the best of those told nothing of the bias",
                    "unaware"))
    told_nothing = [n for n in ranked if entries.told(bench, n) == "nothing"]  # ERM too.
    labelled = [n for n in ranked if entries.told(bench, n) == "group labels"]
    if told_nothing and labelled:  # Ordered as ranked, so that the leader pair is met once.
      lo, hi = sorted((told_nothing[0], labelled[0]), key=ranked.index, reverse=True)
      pairs.append((lo, hi, "the method, the best told nothing of the bias against the best "
                    "given group labels", "labels"))
    if "consistency" in names and "cf_augment" in names:
      pairs.append(("cf_augment", "consistency", "the loss, on the same recolored partners",
                    "loss_vs_data"))
    for o in sorted(oracle):
      if ranked:
        pairs.append((ranked[0], o, "the data, an oracle's", "oracle"))
    for a, b, differ_in, kind in pairs:
      way = rule[a] if rule[a] == rule[b] else "group_val"
      f = compare(res, key(a), key(b), differ_in=differ_in, kind=kind, way=way,
                  measure=measure, n_items=n_test)
      if f is not None:
        out.append({**f, "cell": cell})
  if "erm" in names and len(bench.ratios) > 1:
    hi, lo = max(bench.ratios), min(bench.ratios)
    for protocol in plan.protocol_names(bench):
      for model in plan.models_of(bench.protocols[protocol]):
        a = plan.Run(protocol, model, lo, "erm").key
        b = plan.Run(protocol, model, hi, "erm").key
        f = compare(res, a, b, differ_in=f"the ratio ({pct(lo)} vs {pct(hi)})", kind="ratio",
                    way=rule["erm"], measure=measure,
                    n_items=bench.protocols[protocol].data.test_size)
        if f is not None:
          out.append({**f, "cell": f"{protocol}/{model}"})
  by_protocol = {}
  for f in out:
    by_protocol.setdefault(f["cell"].split("/")[0], []).append(f)
  return [g for fs in by_protocol.values() for g in judge(verdicts.dedupe(fs))]
