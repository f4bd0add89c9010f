"""tools/side_by_side.py's arithmetic and parsing on fake outputs (no torch, no JAX run)."""

import importlib.util
import json
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "tools" / "side_by_side.py"
_spec = importlib.util.spec_from_file_location("side_by_side", _PATH)
sbs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sbs)


def _result(scale: float) -> dict:
  """A speed.json-shaped dict: train workload i at 100 * (i + 1) * scale img/s."""
  return {"train_img_per_s": {w: 100.0 * (i + 1) * scale
                              for i, w in enumerate(sbs.TRAIN_WORKLOADS)},
          "eval_img_per_s": 1000.0 * scale, "pgd_img_per_s": 10.0 * scale,
          "other": "ignored"}


def test_img_per_s_flattens_every_workload():
  got = sbs.img_per_s(_result(2.0))
  assert list(got) == list(sbs.WORKLOADS)
  assert got["erm_b64"] == 200.0 and got["consistency_b256"] == 1200.0
  assert got["eval"] == 2000.0 and got["pgd"] == 20.0


def test_img_per_s_missing_workload_says_which():
  r = _result(1.0)
  del r["train_img_per_s"]["gradient_penalty_b256"]
  with pytest.raises(ValueError, match="gradient_penalty_b256"):
    sbs.img_per_s(r)


def test_parse_json_line_takes_the_last_json_object():
  out = "warning: something\n{\"a\": 1}\nnoise {not json\n" + json.dumps({"b": 2}) + "\n\n"
  assert sbs.parse_json_line(out) == {"b": 2}
  assert sbs.parse_json_line("{\"a\": 1}\n{broken\n") == {"a": 1}


def test_parse_json_line_without_json_fails_clearly():
  with pytest.raises(ValueError, match="No JSON line"):
    sbs.parse_json_line("Traceback: ImportError: torch\n")


def test_summary_median_and_range_by_hand():
  # JAX at 1x, 3x, 2x a PyTorch that runs at 1x, 1x, 0.5x: ratios 1, 3, 4 for every workload.
  jax = [sbs.img_per_s(_result(s)) for s in (1.0, 3.0, 2.0)]
  torch = [sbs.img_per_s(_result(s)) for s in (1.0, 1.0, 0.5)]
  s = sbs.summary(jax, torch)
  assert set(s) == set(sbs.WORKLOADS)
  for w in sbs.WORKLOADS:
    assert s[w]["ratios"] == pytest.approx([1.0, 3.0, 4.0])
    assert s[w]["ratio"] == pytest.approx({"median": 3.0, "min": 1.0, "max": 4.0})
  # Medians of each side's img/s, not the ratio of the medians' inputs.
  assert s["erm_b64"]["jax_img_per_s"] == 200.0 and s["erm_b64"]["torch_img_per_s"] == 100.0
  assert s["pgd"]["torch_img_per_s"] == 10.0


def test_ratio_pairs_per_alternation_not_per_sorted_value():
  # A median of ratios differs from a ratio of medians when load moves both sides together.
  jax = [sbs.img_per_s(_result(s)) for s in (2.0, 4.0)]
  torch = [sbs.img_per_s(_result(s)) for s in (4.0, 2.0)]
  assert sbs.ratios(jax, torch)["eval"] == pytest.approx([0.5, 2.0])


def test_unpaired_runs_and_empty_input_are_errors():
  with pytest.raises(ValueError, match="pair"):
    sbs.ratios([sbs.img_per_s(_result(1.0))], [])
  with pytest.raises(ValueError, match="no alternation"):
    sbs.summarize([])


def test_format_table_rows():
  s = sbs.summary([sbs.img_per_s(_result(1.5))], [sbs.img_per_s(_result(1.0))])
  lines = sbs.format_table(s, n=1).splitlines()
  assert len(lines) == 2 + len(sbs.WORKLOADS)
  assert lines[2] == "| erm_b64 | 150 | 100 | 1.50 (1.50-1.50) |"
  assert "1 alternations" in lines[0]


_OPS_PATH = _PATH.parent / "conv_ops.py"
_ops_spec = importlib.util.spec_from_file_location("conv_ops", _OPS_PATH)
conv_ops = importlib.util.module_from_spec(_ops_spec)
_ops_spec.loader.exec_module(conv_ops)


def test_ops_per_s_is_a_rate_so_ratios_read_torch_ms_over_jax_ms():
  jax_runs = [sbs.ops_per_s({"ms": {"a": 2.0, "b": 1.0}})]
  torch_runs = [sbs.ops_per_s({"ms": {"a": 1.0, "b": 3.0}})]
  assert jax_runs[0] == {"a": 500.0, "b": 1000.0}
  r = sbs.ratios(jax_runs, torch_runs, keys=("a", "b"))
  assert r["a"] == pytest.approx([0.5]) and r["b"] == pytest.approx([3.0])
  table = sbs.format_table(sbs.summary(jax_runs, torch_runs, keys=("a", "b")), n=1, ops=True)
  assert "| a | 2.000 | 1.000 | 0.50 (0.50-0.50) |" in table.splitlines()
  with pytest.raises(ValueError, match="ms per op"):
    sbs.ops_per_s({"img_per_s": {}})


def test_epoch_rates_skip_the_first_epoch_and_sort_by_epoch():
  metrics = "\n".join(json.dumps({"epoch": e, "train_img_per_s": v})
                      for e, v in ((2, 30.0), (1, 5.0), (4, 34.0), (3, 10.0))) + "\n"
  rates = sbs.jax_epoch_rates(metrics)
  assert rates == [5.0, 30.0, 10.0, 34.0]
  assert sbs.epoch_img_per_s(rates) == {"later_epochs": 30.0, "first_epoch": 5.0}
  with pytest.raises(ValueError, match="at least 2"):
    sbs.epoch_img_per_s([5.0])


def test_conv_ops_names_every_conv_op_and_forward_only_at_the_eval_batch():
  names = conv_ops.op_names()
  assert len(names) == len(set(names)) == 3 * 3 * 2 + 3
  assert "conv0_dx_b64" in names and "conv2_dk_b256" in names
  assert "conv1_fwd_b1000" in names and "conv1_dk_b1000" not in names


def test_conv_ops_measure_calls_each_op_images_over_batch_times():
  counts = {"conv0_fwd_b64": 0, "conv0_fwd_b1000": 0}
  ops = {name: (lambda name=name: counts.__setitem__(name, counts[name] + 1)) for name in counts}
  ms = conv_ops.measure(ops, lambda out: out, repeats=3, images=640)
  assert set(ms) == set(counts) and all(v >= 0 for v in ms.values())
  # Two warm-up calls, then 3 repeats of max(4, 640 // batch) calls.
  assert counts == {"conv0_fwd_b64": 2 + 3 * 10, "conv0_fwd_b1000": 2 + 3 * 4}


def test_conv_ops_jax_side_times_the_model_convs_true_derivatives():
  """Each timed JAX op is the conv, or its exact input or kernel gradient (jax.vjp of
  lax.conv_general_dilated), on the op's own inputs."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from ccmnist.models import layers  # pylint: disable=import-outside-toplevel
  ops, wait, versions = conv_ops.jax_ops((2,))
  assert set(ops) == set(conv_ops.op_names((2,))) and "jax_version" in versions
  for _, conv, x, k, dy in conv_ops.inputs((2,)):
    _, _, _, s, p = conv_ops._shapes(conv, 2)  # pylint: disable=protected-access
    y, vjp = jax.vjp(lambda x, k, s=s, p=p: layers._lax_conv(x, k, s, p), x, k)  # pylint: disable=protected-access
    dx, dk = vjp(dy)
    name = conv[0]
    np.testing.assert_allclose(wait(ops[f"{name}_fwd_b2"]()), y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(wait(ops[f"{name}_dx_b2"]()), dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(wait(ops[f"{name}_dk_b2"]()), dk, rtol=1e-4, atol=1e-4)


def _ours_lff(replicas: int, walls: list, steps: list, rates: list, train_eval=None) -> dict:
  """tools/lff_ours.py's JSON line, by hand."""
  return {"replicas": replicas, "model_epochs": 100, "epoch_wall_s": walls,
          "epoch_train_eval_s": train_eval or [0.0] * len(walls),
          "epoch_time_s": steps, "train_img_per_s": rates, "train_size": 512}


def _theirs_epoch(wall: float, data: float, step: float, images: int = 1000) -> dict:
  return {"wall_s": wall, "data_s": data, "step_s": step, "eval_s": wall - data - step,
          "images": images}


def test_steady_skips_the_first_epoch_unless_it_is_the_only_one():
  assert sbs.steady([30.0, 10.0, 12.0, 11.0]) == 11.0
  assert sbs.steady([30.0, 10.0]) == 10.0
  assert sbs.steady([7.0]) == 7.0
  with pytest.raises(ValueError, match="No epoch"):
    sbs.steady([])


def test_model_seconds_first_epoch_then_steady_ones_then_once():
  assert sbs.model_seconds(30.0, 10.0, 100) == 30.0 + 99 * 10.0
  assert sbs.model_seconds(30.0, 10.0, 100, once=4.0) == 30.0 + 99 * 10.0 + 4.0
  assert sbs.model_seconds(7.0, 7.0, 1) == 7.0


def test_ours_lff_times_are_per_replica_and_per_100_epochs():
  # The last epoch also evaluated the train split (4 s): out of its median, counted once.
  t = sbs.ours_lff_times(_ours_lff(5, [30.0, 10.0, 12.0, 15.0], [20.0, 8.0, 9.0, 10.0],
                                   [1.0, 5.0, 7.0, 6.0], train_eval=[0.0, 0.0, 0.0, 4.0]))
  # (first 30 + 99 x median(10, 12, 11) + 4) / 5 replicas; steps: 100 x 9 / 5.
  assert t == pytest.approx({"s_per_model": (30.0 + 99 * 11.0 + 4.0) / 5,
                             "step_s_per_model": 180.0, "img_per_s": 6.0})


def test_theirs_lff_times_count_data_loading_as_training_and_exclude_eval():
  raw = {"model_epochs": 100, "epochs": [_theirs_epoch(50.0, 5.0, 35.0),
                                         _theirs_epoch(40.0, 4.0, 26.0)]}
  t = sbs.theirs_lff_times(raw)
  assert t == pytest.approx({"s_per_model": 50.0 + 99 * 40.0, "step_s_per_model": 3000.0,
                             "img_per_s": 1000.0 / 30.0})


def test_lff_factors_split_the_ratio_into_replicas_times_one_model():
  ours_k = [{"s": 10.0}, {"s": 20.0}]
  ours_1 = [{"s": 40.0}, {"s": 40.0}]
  theirs = [{"s": 200.0}, {"s": 100.0}]
  f = sbs.lff_factors(ours_k, ours_1, theirs, "s")
  assert f["ratio"] == pytest.approx([20.0, 5.0])
  assert f["replicas"] == pytest.approx([4.0, 2.0])
  assert f["one_model"] == pytest.approx([5.0, 2.5])
  for r, k, o in zip(f["ratio"], f["replicas"], f["one_model"]):
    assert r == pytest.approx(k * o)
  with pytest.raises(ValueError, match="pair"):
    sbs.lff_factors(ours_k, ours_1[:1], theirs, "s")


def test_lff_summary_and_table_by_hand():
  # Two alternations: ours at K=4 takes 10 and 20 s per model, at K=1 40 and 40, theirs 200, 100.
  def times(s):
    return {"s_per_model": s, "step_s_per_model": s / 2, "img_per_s": 1000.0 / s}

  ours_k, ours_1, theirs = map(lambda v: [times(x) for x in v],
                               ([10.0, 20.0], [40.0, 40.0], [200.0, 100.0]))
  s = sbs.lff_summary(ours_k, ours_1, theirs)
  whole = s["s_per_model"]
  assert (whole["ours"], whole["ours_1"], whole["theirs"]) == (15.0, 40.0, 150.0)
  assert whole["ratio"] == pytest.approx({"median": 12.5, "min": 5.0, "max": 20.0})
  assert whole["replicas"] == pytest.approx({"median": 3.0, "min": 2.0, "max": 4.0})
  assert s["step_s_per_model"]["ratio"] == whole["ratio"]  # Both sides halved.
  assert s["img_per_s"] == pytest.approx({"ours": 75.0, "ours_1": 25.0, "theirs": 7.5})
  lines = sbs.format_lff_table({"lff / lff": s}, n=2, replicas=4).splitlines()
  assert "K=4" in lines[0] and "2 alternations" in lines[0]
  assert lines[2] == ("| lff / lff, whole epochs | 15 | 40 | 150 | 12.50 (5.00-20.00) | "
                      "3.00 (2.00-4.00) | 3.75 (2.50-5.00) |")
  assert lines[-1] == "| lff / lff | 75 | 25 | 8 |"


def test_lff_ours_makes_the_zoo_run_with_k_replicas_and_cut_epochs():
  spec = importlib.util.spec_from_file_location("lff_ours", _PATH.parent / "lff_ours.py")
  lff_ours = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(lff_ours)
  m = lff_ours._import_ccmnist()  # pylint: disable=protected-access
  bench = lff_ours.bench_config(m["zoo_config"], replicas=3, epochs=2)
  full = m["zoo_config"].build("full")
  for entry in lff_ours.ENTRIES:
    c = m["plan"].run_config(bench, m["plan"].Run("lff", "lff_mlp", 0.01, entry), "/nonexistent")
    assert len(m["runs"].replicas(c)) == 3 and c.train.epochs == 2
    assert c.data.train_size == full.protocols.lff.data.train_size
    assert c.train.batch_size == full.protocols.lff.train.batch_size
    assert c.loss.name == entry
