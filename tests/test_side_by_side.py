"""benchmarks/side_by_side.py's arithmetic and parsing on fake outputs (no torch, no JAX run)."""

import importlib.util
import json
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "side_by_side.py"
_spec = importlib.util.spec_from_file_location("side_by_side", _PATH)
sbs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sbs)


def _result(scale: float) -> dict:
  """A bench.json-shaped dict: train workload i at 100 * (i + 1) * scale img/s."""
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
