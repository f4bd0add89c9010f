"""The debiasing benchmark: the tiny profile end to end, resume, selection, evaluation, errors."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import matplotlib.colors as mcolors
import numpy as np
import pytest

from ccmnist.attacks import anatomy
from ccmnist.attacks import pgd
from ccmnist.attacks import sweep
from ccmnist.data import splits
from ccmnist.interpret import representation
from ccmnist.zoo import analyse
from ccmnist.zoo import carry
from ccmnist.zoo import collect
from ccmnist.zoo import cost
from ccmnist.zoo import entries
from ccmnist.zoo import evaluate
from ccmnist.zoo import plan
from ccmnist.zoo import report
from ccmnist.zoo import stages
from ccmnist.zoo import select
from ccmnist.zoo import shortcut
from ccmnist.plots import zoo as zoo_plots
from ccmnist.train import dfr
from ccmnist.train import loop
from ccmnist.train import runs as runs_lib
from ccmnist.util import workdir as workdir_lib
from configs import zoo as zoo_config

REPO = pathlib.Path(__file__).resolve().parents[1]
# A plain baseline, a method that needs an identification run, and a refit of the ERM run.
METHODS = "erm,jtt,dfr"


def tiny_config():
  c = zoo_config.get_config("tiny")
  with c.unlocked():
    c.methods = METHODS
    # One cheap model to probe for the projection (the full profile's ShapeCNN is slow here).
    c.project_to.protocols.study.models = "cheater,mlp"
  return c


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("benchmark")
  cfg = tiny_config()
  times = stages.run_zoo(cfg, workdir)
  return cfg, workdir, times


def test_every_stage_ran_and_the_report_says_what_it_measured(tiny_bench):
  cfg, workdir, times = tiny_bench
  assert set(times) == set(stages.STAGES)
  md = (workdir / "benchmark.md").read_text()
  assert "This is the TINY profile" in md
  for heading in ("## What the measurements say", "## Protocol `study`, model `cheater`",
                  "## Protocol `lff`, model `lff_mlp`", "## The methods and what each knows",
                  "## Cost", "## How this was made"):
    assert heading in md, heading
  assert md.index("`study`, model") < md.index("`lff`, model")  # run_protocols' order.
  assert "unbiased test set" in md and "Sreelatha et al. 2024" in md
  assert "## Ranking changes between selection rules" in md and "| rank | method |" in md
  # JTT's error set set against the bias, in each cell's table.
  assert "## What the methods told nothing of the bias singled out" in md
  assert md.count("| JTT (its identification run's train errors) |") == 2
  assert "github.com/alinlab/LfF" in md and "config.py:37,65" in md  # Their settings, sourced.
  assert "Projected cost of the `full` profile" in md
  n = len(plan.all_runs(cfg))
  assert re.search(rf"Runs trained on code \S+( \+ local changes)? \({n} runs\)", md) or (
      "Runs trained on code unknown" in md)
  links = re.findall(r"\]\(([^)]+)\)", md)
  assert links and all((workdir / link).exists() for link in links), links


def test_results_hold_every_run_with_three_selections(tiny_bench):
  cfg, workdir, _ = tiny_bench
  res = json.loads((workdir / "results.json").read_text())
  runs = plan.all_runs(cfg)
  assert [r.entry for r in runs[:4]] == ["erm", "identify", "jtt", "dfr"]  # Needs first.
  assert set(res["runs"]) == {r.key for r in runs}
  for r in runs:
    got = res["runs"][r.key]
    assert got["status"] == "done", (r.key, got)
    k = cfg.num_seeds * len(cfg.zoo[r.entry].lam_grid)
    assert got["num_replicas"] == k and len(got["replicas"]) == k
    assert set(got["selection"]) == {"val", "group_val", "oracle"}
    for sel in got["selection"].values():
      assert sel["seeds"] == [0, 1] and len(sel["measures"]["unbiased"]["values"]) == 2
    assert got["cost"]["wall_s"] > 0 and got["cost"]["examples"] > 0
  # The oracle picks the best group-balanced accuracy of the grid: never below the others.
  for got in res["runs"].values():
    o = got["selection"]["oracle"]["measures"]["group_balanced"]["mean"]
    assert all(o >= s["measures"]["group_balanced"]["mean"] for s in got["selection"].values())


def test_measures_match_the_training_runs_own_accuracies(tiny_bench):
  cfg, workdir, _ = tiny_bench
  for r in plan.all_runs(cfg):
    rdir = plan.run_dir(workdir, r)
    own = json.loads((rdir / "results.json").read_text())["replicas"]
    ev = json.loads((rdir / evaluate.EVAL_FILE).read_text())["replicas"]
    for a, b in zip(own, ev):
      assert b["measures"]["unbiased"] == pytest.approx(a["accuracy"]["test_easy"], abs=1e-6)
      assert b["measures"]["test_hard"] == pytest.approx(a["accuracy"]["test_hard"], abs=1e-6)
      assert b["measures"]["val"] == pytest.approx(a["accuracy"]["val"], abs=1e-6)


def test_dependent_runs_read_the_run_they_need(tiny_bench):
  cfg, workdir, _ = tiny_bench
  jtt = plan.Run("study", "cheater", 0.05, "jtt")
  ident, erm = plan.needed_run(cfg, jtt), plan.Run("study", "cheater", 0.05, "erm")
  jcfg = runs_lib.load_config(plan.run_dir(workdir, jtt))
  assert jcfg.loss.settings.reference == str(plan.run_dir(workdir, ident).resolve())
  icfg = runs_lib.load_config(plan.run_dir(workdir, ident))
  assert icfg.train.epochs == 1 and icfg.data.to_dict() == jcfg.data.to_dict()
  dcfg = runs_lib.load_config(plan.run_dir(workdir, plan.Run("study", "cheater", 0.05, "dfr")))
  assert dcfg.dfr.base == str(plan.run_dir(workdir, erm).resolve())
  assert tuple(dcfg.loss.lam_grid) == tuple(cfg.zoo.dfr.lam_grid)


def test_statements_compare_runs_that_differ_in_one_thing(tiny_bench):
  cfg, workdir, _ = tiny_bench
  res = json.loads((workdir / "results.json").read_text())
  assert res["findings"]
  for f in res["findings"]:
    a, b = f["a"].split("/"), f["b"].split("/")
    differ = [i for i in range(4) if a[i] != b[i]]
    assert differ == [3], f  # The method (entry) alone: one ratio in tiny.
    assert f["diff"]["n"] == cfg.num_seeds
  proj = res["cost"]["projection"]
  assert proj["runs"] > proj["priced"] > 0 and proj["total_s"] > 0
  assert "mlp" in proj["by_model"]  # Priced from its cost probe.
  assert (workdir / "cost_probe" / "study" / "mlp" / "results.json").exists()


def test_every_run_is_analysed_at_its_headline_point_beside_its_null(tiny_bench):
  cfg, workdir, _ = tiny_bench
  res = json.loads((workdir / "results.json").read_text())
  selection = json.loads((workdir / report.SELECTION_FILE).read_text())
  rows = analyse.rows(cfg)
  assert {r.entry for r in rows} == set(plan.method_entries(cfg))
  assert not (plan.run_dir(workdir, plan.Run("study", "cheater", 0.05, "identify"))
              / analyse.ANALYSIS_FILE).exists()  # Not a row of the report.
  for r in rows:
    a = json.loads((plan.run_dir(workdir, r) / analyse.ANALYSIS_FILE).read_text())
    sel = selection[r.key][entries.headline_rule(cfg, r.entry)]
    assert a["point"]["entry"] == (sel["entry"] or r.entry)  # A family member's run, or its own.
    rcfg = runs_lib.load_config(plan.run_dir(workdir, plan.Run(r.protocol, r.model, r.ratio,
                                                               a["point"]["entry"])))
    # The replicas at the selected lambda, one per seed, in seed order.
    assert a["point"]["lam"] == sel["lam"] and a["point"]["seeds"] == sel["seeds"]
    assert a["point"]["replicas"] == [x["replica"] for x in runs_lib.replicas(rcfg)
                                      if x["lam"] == sel["lam"]]
    for k, values in a["measures"].items():
      assert len(values) == cfg.num_seeds and len(a["null"][k]) == cfg.analyse.null_inits, k
    got = res["analysis"][r.key]
    for k in analyse.MEASURES:
      assert got[k]["values"] == a["measures"][k] and got[f"{k}_null"]["values"] == a["null"][k]
    rates = [v for k, vs in a["measures"].items() if k not in analyse.NOT_RATES for v in vs]
    assert all(v is None or 0.0 <= v <= 1.0 for v in rates)
  # Resumable: nothing is left to analyse; other settings would analyse every row again.
  assert stages.analyse_done(cfg, workdir) and not analyse.todo(cfg, workdir, selection)
  other = tiny_config()
  with other.unlocked():
    other.analyse.seed = 1
  assert analyse.todo(other, workdir, selection) == rows
  # The CNN's probes read each conv layer too; the MLP has none.
  cheater = res["analysis"]["study/cheater/rho0.95/erm"]
  assert {"color_probe@conv0", "color_probe@conv2_null"} <= set(cheater)
  assert not any("@" in k for k in res["analysis"]["lff/lff_mlp/rho0.95/erm"])
  md = (workdir / "benchmark.md").read_text()
  for protocol in ("study", "lff"):
    assert f"## Did the method remove the shortcut? (protocol `{protocol}`)" in md
  assert "ERM changes" in md and "(null " in md and shortcut.FIGURE in md
  # Every run logged its held-out accuracies at each epoch here: each is read back, stopping on
  # its headline rule's split.
  stops = {r["key"]: r for r in res["early_stopping"]}
  assert stops["study/cheater/rho0.95/erm"]["epochs"] == [1, 2]
  assert stops["lff/lff_mlp/rho0.95/erm"]["epochs"] == [1, 2, 3]
  assert {r["stop_on"] for r in stops.values() if "skipped" not in r} <= {"val", "val_unbiased"}
  assert "## Read at the last epoch: what stopping early would change" in md
  # Its cost per cell, from every analysis.json's timing (3 rows per model here).
  assert re.search(r"`cheater` \d+\.\d s per cell \(median of 3; \d+ s in all\)", md), md[-3000:]
  assert (workdir / shortcut.FIGURE).exists()


def test_methods_their_papers_stop_early_are_read_where_each_seed_stops(tiny_bench):
  """JTT (config.stop_early) is read, seed by seed, at the evaluated epoch its criterion
  prefers: its selected measures are that epoch's, its analysis restores that epoch's params;
  ERM is read at its last epoch."""
  cfg, workdir, _ = tiny_bench
  selection = json.loads((workdir / report.SELECTION_FILE).read_text())
  assert entries.stops_early(cfg, "jtt") and not entries.stops_early(cfg, "erm")
  for protocol, model in (("study", "cheater"), ("lff", "lff_mlp")):
    jtt, erm = (plan.Run(protocol, model, 0.05, e) for e in ("jtt", "erm"))
    ev = json.loads((plan.run_dir(workdir, jtt) / evaluate.EVAL_FILE).read_text())
    epochs = [r["epoch"] for r in ev["grid"][0]["by_epoch"]]
    assert epochs == list(range(1, cfg.protocols[protocol].train.epochs + 1))
    assert ev["grid"][0]["by_epoch"][-1]["measures"] == ev["grid"][0]["measures"]
    for sel in selection[jtt.key].values():
      point = ev["grid"][sel["index"]]
      assert len(sel["epochs"]) == cfg.num_seeds
      for s, e in enumerate(sel["epochs"]):
        row = point["by_epoch"][epochs.index(e)]["measures"]
        assert sel["measures"]["group_balanced"]["values"][s] == row["group_balanced"][s]
        crit = [r["measures"][sel["criterion"]][s] for r in point["by_epoch"]]
        assert row[sel["criterion"]][s] == max(c for c in crit if c is not None)
    assert all(sel["epochs"] is None for sel in selection[erm.key].values())
    a = json.loads((plan.run_dir(workdir, jtt) / analyse.ANALYSIS_FILE).read_text())
    stops = selection[jtt.key][entries.headline_rule(cfg, "jtt")]["epochs"]
    assert a["point"]["epochs"] == stops and "epochs" not in json.loads(
        (plan.run_dir(workdir, erm) / analyse.ANALYSIS_FILE).read_text())["point"]
  # The analysed params: each seed's replica after its own epoch.
  rdir = plan.run_dir(workdir, plan.Run("study", "cheater", 0.05, "jtt"))
  _, got, _ = analyse.params_at(rdir, [1, 0], [2, 1])
  for s, (r, e) in enumerate(((1, 2), (0, 1))):
    want = runs_lib.load_run(rdir, replica=r, epoch=e)[1]
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      np.testing.assert_array_equal(np.asarray(x)[s], np.asarray(y))
  md = (workdir / "benchmark.md").read_text()
  assert "## Stopped early, as their papers stop them" in md
  assert "JTT is read where each seed's selection stops it, as its paper stops it" in md


def test_the_analysis_gives_the_studys_own_numbers_for_the_cheater(tiny_bench):
  """The study's measures (interpret/representation.py network_measures, attacks/sweep.py and
  anatomy.py as attacks/run.py calls them) on the study protocol's ERM CheaterCNN, seed by
  seed, equal the analysis.json of the analyse stage."""
  cfg, workdir, _ = tiny_bench
  ac = cfg.analyse
  rdir = plan.run_dir(workdir, plan.Run("study", "cheater", 0.05, "erm"))
  a = json.loads((rdir / analyse.ANALYSIS_FILE).read_text())
  for s, replica in enumerate(a["point"]["replicas"]):
    model, params, config = runs_lib.load_run(rdir, replica=replica)
    spec = splits.spec(config.data)
    grey, labels = splits.load_grey(config.data, "test")
    stim = representation.counterfactual_stimuli(
        grey, labels, num=ac.num_digits, num_classes=spec.num_classes, seed=ac.seed,
        **splits.coloring_kwargs(config.data))
    layers = ("conv0", "conv1", "conv2")
    net = representation.network_measures(
        model, params, stim, layers=layers, num_causal=4, alpha=ac.alpha, grid=ac.grid,
        folds=representation.folds_of(ac.num_digits, ac.folds, ac.seed),
        num_classes=spec.num_classes, num_colors=spec.num_colors)
    got = {k: v[s] for k, v in a["measures"].items()}
    assert got["uses_color"] == net["input_swap"]["changed"]
    assert got["to_cf_color"] == net["input_swap"]["to_cf_color"]
    for layer in layers:
      assert got[f"color_probe@{layer}"] == net[layer]["probe"]["color"], layer
      assert got[f"digit_probe@{layer}"] == net[layer]["probe"]["digit"], layer
    attack = pgd.from_config(ac.pgd)
    idx, targets = sweep.select_examples(
        stim["labels"], stim["colors"], rule=ac.targets.rule, shift=ac.targets.shift,
        num=ac.num_attack, color_class=spec.color_class, seed=ac.seed)
    images, key = stim["x"][idx].astype(np.float32), jax.random.key(ac.seed)
    mins = sweep.minimal_eps(attack, model, params, images, targets,
                             jax.random.fold_in(key, 10_000), eps_max=ac.min_eps.eps_max,
                             iters=ac.min_eps.iters, criterion="argmax")
    median = sweep.summarize_min_eps(mins["min_eps"], eps_max=ac.min_eps.eps_max)["median"]
    assert got["min_eps"] == (median if np.isfinite(median) else None)
    adv = sweep.sweep(attack, model, params, images, targets, [attack.eps],
                      jax.random.fold_in(key, 0))[0]
    anat = anatomy.anatomy_with_null(images, adv, eps=attack.eps, norm=attack.norm,
                                     seed=ac.anatomy.null_seed,
                                     threshold=ac.anatomy.stroke_threshold)
    assert got["color_shift_share"] == pytest.approx(anat["color_shift_share"], rel=1e-6)
    assert got["color_shift_share_random"] == anat["color_shift_share_null"]


def test_a_second_call_trains_nothing_and_other_configs_are_refused(tiny_bench, monkeypatch):
  cfg, workdir, _ = tiny_bench
  before = json.loads((workdir / "results.json").read_text())
  stage_times = json.loads((workdir / "stages.json").read_text())

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(loop, "train_and_evaluate", no_training)
  monkeypatch.setattr(dfr, "refit", no_training)
  stages.run_zoo(cfg, workdir)
  after = json.loads((workdir / "results.json").read_text())
  assert after["runs"] == before["runs"]
  assert json.loads((workdir / "stages.json").read_text())["train"] == stage_times["train"]
  with cfg.unlocked():
    cfg.only = "report"  # `only` selects stages; it is not part of what is computed.
  stages.run_zoo(cfg, workdir)
  other = tiny_config()
  with other.unlocked():
    other.num_seeds = 1
  with pytest.raises(ValueError, match="different config"):
    stages.run_zoo(other, workdir)


def _without_timings(tree):
  """results.json less what a second sitting changes: wall times, rates, dates, and `only`."""
  if isinstance(tree, dict):
    return {k: _without_timings(v) for k, v in tree.items()
            if k not in ("cost", "timing", "stages", "environment", "generated", "only")}
  if isinstance(tree, list):
    return [_without_timings(v) for v in tree]
  return tree


def test_a_benchmark_resumes_from_its_kept_files_to_the_same_results(tiny_bench, tmp_path):
  _, workdir, _ = tiny_bench
  cfg = tiny_config()  # Every stage (another test leaves the fixture's config.only set).
  kept = tmp_path / "kept"
  out = carry.save(workdir, kept)
  assert len(out["runs"]) == len(plan.all_runs(cfg)) + len(plan.probes(cfg)) and not out["left"]
  heavy = [p for p in kept.rglob("*") if p.name in carry.HEAVY]
  assert not heavy, heavy
  for run in plan.all_runs(cfg):
    assert (plan.run_dir(kept, run) / evaluate.EVAL_FILE).exists()
  # Kept mid-benchmark: JTT not yet trained, the MLP's ERM not yet analysed.
  jtt, ident = plan.Run("lff", "lff_mlp", 0.05, "jtt"), plan.Run("lff", "lff_mlp", 0.05, "identify")
  erm = plan.Run("lff", "lff_mlp", 0.05, "erm")
  for path in plan.run_dir(kept, jtt).iterdir():
    path.unlink()
  (plan.run_dir(kept, erm) / analyse.ANALYSIS_FILE).unlink()
  got = carry.status(kept, measured=workdir)  # JTT's rate, measured in the full workdir.
  assert got["left"] == [jtt.key] and len(got["finished"]) == len(plan.all_runs(cfg)) - 1
  assert got["left_projected_s"] > 0 and not got["unpriced"] and got["wall_s"] > 0
  with pytest.raises(ValueError, match="another benchmark"):
    carry.save(workdir, _other_benchmark(tmp_path))
  assert set(carry.left_out(cfg, kept, analyse=False)) == {ident}
  with pytest.raises(ValueError, match="drop --analyse_as_trained"):
    stages.run_zoo(cfg, tmp_path / "shared", share=True, analyse_as_trained=True)
  (kept / "README.md").write_text("what this folder is")  # Not the benchmark's: stays there.
  resumed = tmp_path / "resumed"
  out = carry.restore(kept, resumed, analyse=True)
  assert not (resumed / "README.md").exists() and (resumed / "config.json").exists()
  assert set(out["left_out"]) == {ident.key, erm.key}
  assert not stages.finished(resumed, ident) and not stages.finished(resumed, jtt)
  # Trains identify, JTT and the MLP's ERM again, analysing each row as it lands.
  stages.stage_train(cfg, resumed, analyse_as_trained=True)
  for run in (jtt, erm):
    assert (plan.run_dir(resumed, run) / analyse.ANALYSIS_FILE).exists(), run
  stages.run_zoo(cfg, resumed)
  before = json.loads((workdir / "results.json").read_text())
  after = json.loads((resumed / "results.json").read_text())
  assert _without_timings(after) == _without_timings(before)


def test_a_kept_run_is_copied_less_its_heavy_files_and_marked_finished_last(tmp_path,
                                                                              monkeypatch):
  src = tmp_path / "run"
  for name in ("results.json", "metrics.jsonl", "zz.json", ".results.json.tmp.json",
               "predictions.npz", "checkpoints/5/params", "tensorboard/replica_0/events"):
    (src / name).parent.mkdir(parents=True, exist_ok=True)
    (src / name).write_text(name)
  order = []
  write = carry.io.write_bytes
  monkeypatch.setattr(carry.io, "write_bytes", lambda path, data: order.append(
      pathlib.Path(path).name) or write(path, data))
  assert carry._copy_light(src, tmp_path / "kept") == 3
  assert order == ["metrics.jsonl", "zz.json", "results.json"]  # A stopped copy is unfinished.
  assert (tmp_path / "kept" / "zz.json").read_text() == "zz.json"


def _other_benchmark(tmp_path):
  other = tmp_path / "other"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"num_seeds": 99}))
  return other


def test_a_diverged_run_is_recorded_and_the_rest_goes_on(tmp_path, monkeypatch):
  cfg = tiny_config()
  with cfg.unlocked():
    cfg.methods = "erm,jtt"
    cfg.run_protocols = "lff"
    cfg.only = "train"
    cfg.project_to = type(cfg.project_to)()

  def diverge(config, workdir):
    raise loop.NonFiniteLossError("Loss became nan at step 3 (replica 0); lower the rate.")
  monkeypatch.setattr(loop, "train_and_evaluate", diverge)
  stages.run_zoo(cfg, tmp_path)
  erm = plan.Run("lff", "lff_mlp", 0.05, "erm")
  ident = plan.Run("lff", "lff_mlp", 0.05, "identify")
  jtt = plan.Run("lff", "lff_mlp", 0.05, "jtt")
  assert "Loss became nan" in json.loads(
      (plan.run_dir(tmp_path, erm) / report.FAILED_FILE).read_text())["error"]
  assert "identify run" in json.loads(
      (plan.run_dir(tmp_path, jtt) / report.FAILED_FILE).read_text())["error"]
  assert stages.finished(tmp_path, ident)
  res = report.collect(cfg, tmp_path)
  assert res["runs"][erm.key]["status"] == "failed"
  assert report.cell_unbiased(res["runs"][erm.key]) == "diverged"


# ---------------------------------------------------------------- pure pieces

def _grid(points):
  """A hand-made run_measures grid: points = [{measure: per-seed values}]."""
  out = []
  for g, measures in enumerate(points):
    full = {m: measures.get(m, [0.5, 0.5]) for m in evaluate.MEASURES}
    out.append({"lam": float(g), "seeds": [0, 1], "measures": full})
  return out


def test_each_selection_picks_the_grid_point_its_criterion_prefers():
  grid = _grid([
      {"val": [0.99, 0.97], "val_unbiased_worst_group": [0.2, 0.3],
       "group_balanced": [0.25, 0.35]},
      {"val": [0.90, 0.92], "val_unbiased_worst_group": [0.6, 0.5],
       "group_balanced": [0.50, 0.56]},
      {"val": [0.80, 0.82], "val_unbiased_worst_group": [0.5, 0.55],
       "group_balanced": [0.70, 0.60]},
  ])
  got = select.select(grid)
  assert {w: s["lam"] for w, s in got.items()} == {"val": 0.0, "group_val": 1.0,
                                                   "oracle": 2.0}
  assert got["val"]["score"] == pytest.approx(0.98)
  assert got["group_val"]["measures"]["group_balanced"]["mean"] == pytest.approx(0.53)
  assert got["group_val"]["measures"]["group_balanced"]["std"] == pytest.approx(
      np.std([0.50, 0.56], ddof=1))
  assert got["oracle"]["measures"]["group_balanced"]["values"] == [0.70, 0.60]
  # A tie goes to the first point; a point missing a seed's criterion is no candidate.
  tie = _grid([{"val": [0.5, 0.7]}, {"val": [0.6, 0.6]}, {"val": [0.9, None]}])
  assert select.select(tie)["val"]["lam"] == 0.0
  none = _grid([{"val_unbiased_worst_group": [None, None]}])
  assert "group_val" not in select.select(none)


def _with_epochs(point: dict, by_epoch: dict) -> dict:
  """A hand-made grid point with its evaluated epochs {epoch: {measure: per seed}} (others
  0.5); its last epoch's measures are the point's own."""
  rows = [{"epoch": e, "measures": {m: ms.get(m, [0.5, 0.5]) for m in evaluate.MEASURES}}
          for e, ms in sorted(by_epoch.items())]
  return {**point, "measures": rows[-1]["measures"], "by_epoch": rows}


def test_a_selection_that_stops_early_reads_each_seed_at_its_best_epoch():
  """Group_val by hand: at lambda 0 seed 0 is best at epoch 20; seed 1 ties on the worst group
  at 10 and 20 and its tie break prefers 20 (equal tie breaks: the first, 10). Stopped, lambda 0
  (mean 0.65) beats lambda 1 (best at its last epoch, 0.6), which the last epoch prefers."""
  wg, gb, tie = "val_unbiased_worst_group", "group_balanced", "val_unbiased_group_balanced"
  grid = _grid([{}, {}])
  grid[0] = _with_epochs(grid[0], {
      10: {wg: [0.3, 0.6], gb: [0.11, 0.12], tie: [0.5, 0.7]},
      20: {wg: [0.7, 0.6], gb: [0.21, 0.22], tie: [0.5, 0.8]},
      30: {wg: [0.5, 0.5], gb: [0.31, 0.32]}})
  grid[1] = _with_epochs(grid[1], {10: {wg: [0.4, 0.4]}, 20: {wg: [0.55, 0.55]},
                                   30: {wg: [0.6, 0.6], gb: [0.41, 0.42]}})
  last = select.select(grid)["group_val"]
  assert (last["lam"], last["epochs"]) == (1.0, None)
  got = select.select(grid, stop_early=True)["group_val"]
  assert got["lam"] == 0.0 and got["epochs"] == [20, 20]
  assert got["score"] == pytest.approx(0.65)
  assert got["measures"][gb]["values"] == [0.21, 0.22]
  grid[0]["by_epoch"][1]["measures"][tie] = [0.5, 0.7]  # Equal tie breaks: the first epoch.
  got = select.select(grid, stop_early=True)["group_val"]
  assert got["epochs"] == [20, 10] and got["measures"][gb]["values"] == [0.21, 0.12]
  # Every way stops on its own criterion; a run without evaluated epochs is read at its last.
  assert select.select(grid, stop_early=True)["val"]["epochs"] == [10, 10]
  old = select.select(_grid([{}, {}]), stop_early=True)
  assert all(s["epochs"] is None for s in old.values())


def _splits():
  lab = np.array([0, 0, 1, 1, 2, 2], np.int32)
  al = np.array([True, False, True, False, True, False])
  col = np.where(al, lab, (lab + 1) % 3).astype(np.int32)
  return {"test_easy": {"labels": lab, "colors": col, "aligned": al},
          "test_hard": {"labels": lab, "colors": (lab + 1) % 3, "aligned": np.zeros(6, bool)},
          "val": {"labels": lab[:4], "colors": col[:4], "aligned": al[:4]},
          "val_unbiased": {"labels": lab[:2], "colors": col[:2], "aligned": al[:2]}}


def test_group_accuracies_of_hand_made_predictions():
  splits = _splits()
  wrong = np.array([0, 0, 1, 0, 2, 1])  # Right on every aligned digit, 1 of 3 conflicting.
  right = splits["test_easy"]["labels"]
  got = evaluate.replica_measures({"test_easy": wrong, "test_hard": right,
                                   "val": np.array([0, 1, 1, 1]), "val_unbiased": [1, 1]},
                                  splits)
  assert got["unbiased"] == pytest.approx(4 / 6)
  assert got["aligned"] == 1.0 and got["conflicting"] == pytest.approx(1 / 3)
  assert got["worst_group"] == 0.0  # Digit 1's and digit 2's conflicting examples.
  assert got["test_hard"] == 1.0 and got["val"] == 0.75 and got["val_unbiased"] == 0.0
  # Four replicas = 2 grid points x 2 seeds; replica r is grid point r // 2, seed r % 2.
  preds = {"test_easy": np.stack([wrong, right, right, wrong])}
  reps = [{"replica": r, "seed": r % 2, "lam": [0.1, 0.5][r // 2]} for r in range(4)]
  out = evaluate.run_measures(preds, splits, reps, num_seeds=2)
  assert [p["lam"] for p in out["grid"]] == [0.1, 0.5]
  assert out["grid"][0]["measures"]["unbiased"] == pytest.approx([4 / 6, 1.0])
  assert out["grid"][1]["measures"]["worst_group"] == [1.0, 0.0]
  assert out["grid"][0]["measures"]["val"] == [None, None]  # No predictions of it.
  with pytest.raises(ValueError, match="does not belong to this data"):
    evaluate.run_measures({"test_easy": np.zeros((4, 5), int)}, splits, reps, num_seeds=2)


def _res(values: dict) -> dict:
  """A hand-made collect() result: {run key: per-seed val-selected unbiased accuracies}."""
  runs = {}
  for key, v in values.items():
    runs[key] = {"selection": {"val": {"measures": {"unbiased": {"values": v}}}}}
  return {"runs": runs}


def test_comparisons_are_findings_only_beyond_the_seed_spread():
  a, b = "study/cheater/rho0.99/erm", "study/cheater/rho0.99/groupdro"
  ahead = report.compare(_res({a: [0.30, 0.32, 0.31], b: [0.50, 0.53, 0.51]}), a, b,
                         differ_in="the method", kind="lead")
  assert ahead["holds"] is True and ahead["diff"]["mean"] == pytest.approx(0.2033, abs=1e-4)
  behind = report.compare(_res({a: [0.50, 0.52, 0.51], b: [0.30, 0.33, 0.31]}), a, b,
                          differ_in="the method", kind="lead")
  assert behind["holds"] is False
  noisy = report.compare(_res({a: [0.30, 0.50, 0.40], b: [0.45, 0.35, 0.42]}), a, b,
                         differ_in="the method", kind="lead")
  # Differences +0.15, -0.15, +0.02: mean 0.0067, sd 0.150, t(2) = 0.077, p 0.95.
  assert noisy["holds"] is None and noisy["strength"].endswith("not resolved with 3 seeds")
  assert noisy["df"] == 2 and noisy["p"] == pytest.approx(0.95, abs=0.01)
  text = report.statement({**noisy, "cell": "study/cheater/rho0.99"}, {"groupdro": "Group DRO"})
  assert "is not resolved with 3 seeds (paired t(2) = 0.08, p = 0.95" in text
  assert report.compare(_res({a: [0.3]}), a, b, differ_in="", kind="lead") is None


def test_the_projection_prices_planned_runs_at_measured_rates():
  measured = [
      {"model": "cheater", "loss": "erm", "kind": "train", "rate": 1000.0, "fixed_s": 2.0,
       "wall_s": 12.0},
      {"model": "cheater", "loss": "consistency", "kind": "train", "rate": 500.0,
       "fixed_s": 4.0, "wall_s": 24.0},
      {"model": "mlp", "loss": "erm", "kind": "train", "rate": 4000.0, "fixed_s": 1.0,
       "wall_s": 3.0},
      {"model": "cheater", "loss": "dfr", "kind": "dfr", "rate": None, "fixed_s": None,
       "wall_s": 5.0}]
  planned = [
      {"key": "a", "model": "cheater", "loss": "erm", "kind": "train", "examples": 10_000},
      {"key": "b", "model": "mlp", "loss": "consistency", "kind": "train", "examples": 8_000},
      {"key": "c", "model": "shape_cnn", "loss": "erm", "kind": "train", "examples": 1},
      {"key": "d", "model": "mlp", "loss": "dfr", "kind": "dfr", "examples": 0}]
  got = cost.project(measured, planned)
  # a: 3 + 10000 / 1000 (fixed: the median of cheater's 2 and 4); b: mlp's ERM rate at
  # consistency's cost relative to ERM on the cheater (0.5x); d: the refit measured elsewhere.
  assert got["by_model"]["cheater"] == pytest.approx(3.0 + 10.0)
  assert got["by_model"]["mlp"] == pytest.approx(1.0 + 8000 / 2000 + 5.0)
  assert got["unpriced"] == ["c"] and got["priced"] == 3 and got["runs"] == 4
  assert got["by_run"] == pytest.approx({"a": 13.0, "b": 5.0, "d": 5.0})
  # Set beside what ran: a took 26 s (2x), d 5 s; b has not finished.
  seen = cost.against(got["by_run"], {"a": 26.0, "d": 5.0, "z": 1.0})
  assert [key for key, _, _ in seen["rows"]] == ["a", "d"] and seen["finished"] == 2
  assert seen["projected_s"] == pytest.approx(18.0) and seen["measured_s"] == pytest.approx(31.0)
  assert seen["left_s"] == pytest.approx(5.0)


def test_the_wall_times_of_finished_runs_are_read_by_run_key(tmp_path):
  done = tmp_path / "runs" / "lff" / "lff_mlp" / "rho0.99" / "erm"
  done.mkdir(parents=True)
  (done / cost.TIME_FILE).write_text(json.dumps({"wall_s": 12.5, "calls": 2}))
  (tmp_path / "runs" / "lff" / "lff_mlp" / "rho0.99" / "jtt").mkdir()  # Unfinished: no file.
  assert cost.walls_of(tmp_path) == {"lff/lff_mlp/rho0.99/erm": 12.5}


def test_a_configs_own_runs_are_priced_apart_from_its_project_to(tmp_path):
  bench = zoo_config.get_config("full")
  with bench.unlocked():
    bench.methods, bench.run_protocols, bench.ratios, bench.num_seeds = "erm", "lff", (0.01,), 5
  measured = [{"model": "lff_mlp", "loss": "erm", "kind": "train", "rate": 1000.0,
               "fixed_s": 7.0, "wall_s": 100.0}]
  got = cost.project(measured, collect.planned_runs(bench, own=True))
  # One run: 203 steps of 256 digits x 100 epochs x 5 seeds, at 1000 examples/s, plus 7 s.
  assert got["runs"] == 1 and got["total_s"] == pytest.approx(7.0 + 203 * 256 * 100 * 5 / 1000)
  assert len(collect.planned_runs(bench)) > 1  # Without `own`: the full profile it projects to.
  with pytest.raises(ValueError, match="holds no config.json"):
    collect.workdir_costs(tmp_path)
  # A finished benchmark's results.json prices a config too (its cost.measured records).
  (tmp_path / "results.json").write_text(json.dumps({"cost": {"measured": measured}}))
  assert collect.measured_costs_of(tmp_path / "results.json") == measured
  (tmp_path / "other.json").write_text(json.dumps({"runs": {}}))
  with pytest.raises(ValueError, match="no cost.measured"):
    collect.measured_costs_of(tmp_path / "other.json")


def test_run_order_and_directories():
  cfg = zoo_config.get_config("full")
  runs = plan.all_runs(cfg)
  # ratios x models x (the 15 methods + identify + Group DRO's 3 L2 and JTT's 2 T family runs,
  # each T with its identification run).
  assert len(runs) == 4 * (3 + 1) * (16 + 3 + 2 * 2)
  cell = [r.entry for r in runs if r.cell == "study/cheater/rho0.995"]
  assert cell.index("identify") < cell.index("jtt") and cell.index("erm") < cell.index("dfr")
  assert str(plan.run_dir("D", runs[0])) == "D/runs/study/cheater/rho0.95/erm"
  assert plan.rho_of(0.005) == 0.995 and plan.Run("lff", "lff_mlp", 0.02, "lff").rho == 0.98
  assert zoo_config.get_config("quick").ratios == (0.01,)


@pytest.mark.parametrize("field,value,match", [
    ("ratios", (0.05, 1.5), "bias-conflicting fraction"),
    ("ratios", (0.05, 0.05), "twice"),
    ("methods", "erm,nonsense", "not entries of config.zoo"),
    ("run_protocols", "study,imagenet", "run_protocols"),
    ("only", "train,nonsense", "unknown stages"),
    ("num_seeds", 0, "num_seeds"),
])
def test_bad_configs_fail_before_anything_is_written(tmp_path, field, value, match):
  cfg = tiny_config()
  with cfg.unlocked():
    cfg[field] = value
  with pytest.raises(ValueError, match=match):
    stages.run_zoo(cfg, tmp_path / "w")
  assert not (tmp_path / "w").exists()


def test_bad_entries_fail_with_what_to_fix():
  cfg = tiny_config()
  with cfg.unlocked():
    cfg.zoo.identify.needs = "jtt"  # jtt needs identify.
  with pytest.raises(ValueError, match="circle"):
    plan.check_config(cfg)
  cfg = tiny_config()
  with cfg.unlocked():
    cfg.protocols.lff.data.val_balanced_size = 0
  with pytest.raises(ValueError, match="val_balanced_size > 0"):
    plan.check_config(cfg)
  cfg = tiny_config()
  with cfg.unlocked():
    cfg.zoo.jtt.lam_grid = (0.5,)
  with pytest.raises(ValueError, match="benchmark run study/cheater/rho0.95/jtt"):
    plan.check_config(cfg)


def test_a_bad_config_on_the_command_line_is_one_line(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
      [sys.executable, "-m", "launch.zoo", "--config=configs/zoo.py:tiny",
       "--config.ratios=(0.05,2.0)", f"--workdir={tmp_path / 'w'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config.ratios holds 2.0") and "Traceback" not in proc.stderr
  assert not (tmp_path / "w").exists()


def test_a_kept_folder_of_another_benchmark_is_refused(tmp_path):
  keep = _other_benchmark(tmp_path)
  mine = json.loads(workdir_lib.config_json(tiny_config()))
  with pytest.raises(ValueError, match="holds another benchmark's config.*num_seeds: 99"):
    carry.check_config(mine, keep)  # launch.zoo --keep checks this before writing anything.
  carry.check_config(mine, tmp_path / "new")  # A new folder holds no config: nothing to check.
  assert sorted(p.name for p in keep.iterdir()) == ["config.json"]
  same = tmp_path / "same"  # Which stages run (stages.IGNORE) is no other benchmark.
  same.mkdir()
  (same / "config.json").write_text(json.dumps({**mine, "only": "report", "analyse": {}}))
  carry.check_config(mine, same)


def test_every_method_has_its_own_color_and_the_legend_hides_none():
  colors = [zoo_plots.method_color(m) for m in zoo_config.ZOO]
  assert len(set(colors)) == len(colors)
  panels = {"a / m": {"erm": ([0.01, 0.05], [0.2, 0.3], [0.01, 0.02]),
                      "lff": ([0.01, 0.05], [None, None], [None, None]),
                      "groupdro": ([0.01, 0.05], [0.4, 0.5], [0.0, 0.0])}}
  fig = zoo_plots.accuracy_vs_ratio_figure(panels, titles={"erm": "ERM"})
  # One column of panels per family, ERM the reference in each, in its legend first.
  labels = [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]
  assert labels == [["ERM", "groupdro"], ["ERM", "lff"]]
  for ax in fig.axes:
    assert "#000000" in {mcolors.to_hex(line.get_color()) for line in ax.get_lines()}


def test_the_shortcut_figures_keep_their_legend_inside_the_canvas_and_off_the_panels():
  names = list(zoo_config.ZOO)
  points = [(n, r, 0.5 + 0.03 * i - r, 0.4 - 0.02 * i + r) for i, n in enumerate(names)
            for r in (0.05, 0.02, 0.01)]
  for panels in ({"lff / lff_mlp": {"points": points, "null": 0.0}},
                 {"lff / lff_mlp": {"points": points, "null": 0.0},
                  "study / cheater": {"points": points[:6], "null": 0.3}}):
    for draw in (zoo_plots.uses_color_figure, zoo_plots.carries_color_figure):
      _check_legend_and_axes(draw(panels, titles={n: f"a long title of {n}" for n in names}),
                             names, points, x_from_data=draw is zoo_plots.uses_color_figure)


def _check_legend_and_axes(fig, names, points, *, x_from_data):
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  canvas = fig.bbox
  boxes = [legend.get_window_extent(renderer) for legend in fig.legends]
  for box in boxes:
    assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0
    assert box.y1 <= canvas.y1
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
  assert not boxes[0].overlaps(boxes[1])
  assert len(fig.legends[0].get_texts()) == len(names) + 1  # Every method and the null.
  # The marker says the ratio, one each, largest first; no text on the panels to collide.
  ratios = sorted({p[1] for p in points}, reverse=True)
  assert [t.get_text() for t in fig.legends[1].get_texts()] == [f"{100 * r:g}%" for r in ratios]
  markers = [h.get_marker() for h in fig.legends[1].legend_handles]
  assert len(set(markers)) == len(ratios)
  assert not any(ax.texts for ax in fig.axes)
  drawn = {(c.get_paths()[0].vertices.tobytes()) for c in fig.axes[0].collections}
  assert len(drawn) == len(ratios)  # Each point's marker is one of the ratios'.
  lo, hi = fig.axes[0].get_xlim()
  assert lo <= 100 * min(p[2] for p in points) and hi >= (100 if x_from_data else
                                                           100 * max(p[2] for p in points))
  assert fig.axes[0].get_ylim()[1] >= 100 * max(p[3] for p in points)


def test_the_eta_prices_each_run_at_its_own_methods_rate_else_its_models():
  left = [plan.Run("study", "cheater", 0.05, "erm"), plan.Run("study", "cheater", 0.05, "irm"),
          plan.Run("lff", "lff_mlp", 0.05, "erm"), plan.Run("study", "shape_cnn", 0.05, "erm")]
  work = {left[0].key: (1000.0, ("cheater", "erm")), left[1].key: (600.0, ("cheater", "irm")),
          left[2].key: (4000.0, ("lff_mlp", "erm")), left[3].key: (300.0, ("shape_cnn", "erm"))}
  spent = {("cheater", "erm"): [2000.0, 4.0], ("cheater", "gradient_penalty"): [1000.0, 8.0],
           ("lff_mlp", "erm"): [8000.0, 2.0]}
  # ERM on the cheater at its own 500/s, not the penalty's 125/s; IRM, not yet trained, at the
  # cheater's pooled 3000 / 12 s; the MLP at 4000/s; the unseen model at every run's 11000 / 14 s.
  assert stages.eta(left, work, spent) == pytest.approx(
      2.0 + 600 * 12 / 3000 + 1.0 + 300 * 14 / 11000)
  assert stages.eta(left, work, {}) == 0.0
  # A refit that trained nothing (DFR: 5 s, no work) leaves the pooled rates alone.
  refit = {**spent, ("cheater", "dfr"): [0.0, 5.0]}
  assert stages.eta(left, work, refit) == pytest.approx(stages.eta(left, work, spent))


def test_a_resumed_runs_wall_time_counts_its_earlier_calls(tmp_path):
  rdir = tmp_path / "run"
  rdir.mkdir()
  metrics = rdir / "metrics.jsonl"
  metrics.write_text("{}\n")
  os.utime(metrics, (1600.0, 1600.0))

  def call(k, start, end=None, before=None):
    (rdir / cost.CALL_FILE.format(k)).write_text(json.dumps(
        {"start": start, "end": end, "end_of_call_before": before}))

  # Call 0 finished (100 s); call 1 was killed after an epoch written at 1600: it cost 600 s,
  # what it did after that is redone.
  call(0, 500.0, 600.0)
  call(1, 1000.0)
  cost.open_call(rdir)
  opened = json.loads((rdir / cost.CALL_FILE.format(2)).read_text())
  assert opened["end"] is None and opened["end_of_call_before"] == 1600.0
  # Call 2 is killed before its first epoch (the metrics line is older than it): 0 s.
  call(2, 2000.0, before=1600.0)
  before = {p.name: p.read_text() for p in rdir.iterdir()}
  cost.open_call(rdir)
  assert {p.name: p.read_text() for p in rdir.iterdir() if p.name in before} == before
  assert json.loads((rdir / cost.CALL_FILE.format(3)).read_text())["end_of_call_before"] == 2000.0
  wall, calls = cost.close_call(rdir, 30.0)
  assert (wall, calls) == (pytest.approx(100.0 + 600.0 + 0.0 + 30.0), 4)
  assert json.loads((rdir / cost.CALL_FILE.format(3)).read_text())["end"] is not None
  # Each call names the code that made it; the hand-written calls above name none.
  assert cost.codes(rdir)[:3] == ["unrecorded"] * 3
  assert re.fullmatch(r"[0-9a-f]{7,}( \+ local changes)?|unknown", cost.codes(rdir)[3])


def test_train_one_records_the_wall_time_of_every_call(tmp_path):
  cfg = tiny_config()
  run = plan.all_runs(cfg)[0]
  rdir = plan.run_dir(tmp_path, run)
  rdir.mkdir(parents=True)
  (rdir / cost.CALL_FILE.format(0)).write_text(json.dumps(
      {"start": 0.0, "end": 500.0, "end_of_call_before": None}))
  wall = stages.train_one(cfg, run, tmp_path)
  timing = json.loads((rdir / cost.TIME_FILE).read_text())
  assert timing["calls"] == 2 and 0 < timing["last_call_s"] < wall
  assert wall == pytest.approx(timing["wall_s"]) == pytest.approx(500.0 + timing["last_call_s"])
