"""Verdicts: the paired t-test, its exact sign-flip check, Holm's correction and the merging of
comparisons of identical runs, against values worked out by hand."""

import math

import pytest
from scipy import stats

from ccmnist.report import verdicts


def test_paired_t_on_three_seeds_by_hand():
  t = verdicts.paired_test([0.1, 0.2, 0.3], [0.3, 0.3, 0.5])
  assert t["values"] == pytest.approx([0.2, 0.1, 0.2])
  # mean 0.5 / 3; deviations +1/30, -2/30, +1/30: sd = sqrt((1 + 4 + 1) / 900 / 2) = 0.0577;
  # t = mean / (sd / sqrt 3) = (1/6) / (1/30) = 5, df 2.
  mean, sd = 0.5 / 3, math.sqrt(6 / 900 / 2)
  assert t["mean"] == pytest.approx(mean)
  assert t["statistic"] == pytest.approx(mean / (sd / math.sqrt(3))) == pytest.approx(5.0)
  assert t["df"] == 2 and t["n"] == 3 and t["test"] == "paired t"
  assert t["p"] == pytest.approx(2 * stats.t.sf(5.0, 2))  # 0.0377
  half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
  assert t["ci"] == pytest.approx([mean - half, mean + half])
  assert t["p_exact"] == pytest.approx(2 / 8)  # All 3 positive: only +++ and --- reach it.


def test_paired_t_on_five_seeds_by_hand():
  a = [0.50, 0.40, 0.60, 0.55, 0.45]
  d = [0.01, 0.03, -0.01, 0.02, 0.05]
  t = verdicts.paired_test(a, [x + y for x, y in zip(a, d)])
  # mean 0.02; deviations -1, 1, -3, 0, 3 (x 0.01): sd = sqrt(20e-4 / 4) = 0.02236;
  # t = 0.02 / (0.02236 / sqrt 5) = 2, df 4.
  assert t["mean"] == pytest.approx(0.02)
  assert t["statistic"] == pytest.approx(0.02 / (math.sqrt(20e-4 / 4) / math.sqrt(5)))
  assert t["statistic"] == pytest.approx(2.0) and t["df"] == 4
  assert t["p"] == pytest.approx(2 * stats.t.sf(2.0, 4))  # 0.116
  # |d| = 1, 3, 1, 2, 5 sums to 12; a flip set S gives 12 - 2 S, beyond |10| when S <= 1 or
  # S >= 11: {}, {1}, {1'} and their complements, 6 of 32.
  assert t["p_exact"] == pytest.approx(6 / 32)
  holds, strength = verdicts.decide(t, direction=1)
  assert holds is None and strength.endswith("not resolved with 5 seeds")


def test_exact_sign_flip_p_of_four_positive_differences():
  assert verdicts.sign_flip_p([0.1, 0.2, 0.3, 0.4]) == pytest.approx(2 / 16)
  assert verdicts.sign_flip_p([0.0, 0.0, 0.0]) == pytest.approx(1.0)
  assert verdicts.sign_flip_p([0.1] * 17) is None  # Beyond MAX_EXACT flips.


def test_without_spread_t_is_undefined_and_the_sign_flip_p_decides():
  # Every seed 4 points ahead: sd 0, so t = mean / 0; of the 2^n flips only ++.. and --.. reach
  # the mean: p = 2 / 2^n, 0.5 with 2 seeds, 2 / 32 with 5 (not below 0.05 either).
  two = verdicts.paired_test([0.50, 0.60], [0.54, 0.64])
  assert two["statistic"] is None and two["test"] == verdicts.NO_SPREAD
  assert two["p"] == pytest.approx(0.5) and verdicts.decide(two, direction=1)[0] is None
  five = verdicts.paired_test([0.5] * 5, [0.54] * 5)
  assert five["p"] == pytest.approx(2 / 32) and verdicts.decide(five, direction=1)[0] is None
  six = verdicts.paired_test([0.5] * 6, [0.54] * 6)
  assert six["p"] == pytest.approx(2 / 64) and verdicts.decide(six, direction=1)[0] is True


def test_holm_adjusts_step_down_against_hand_values():
  # m = 4 (None does not count): sorted 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06,
  # 0.04 x 1 = 0.04 -> 0.06 (monotone).
  assert verdicts.holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx(
      [0.03, 0.06, 0.06, 0.02, None])
  assert verdicts.holm([0.6, 0.7]) == [1.0, 1.0]  # Capped at 1.
  assert verdicts.holm([None, 0.2]) == [None, 0.2]


def test_decide_reads_the_holm_adjusted_p():
  t = verdicts.paired_test([0.1, 0.2, 0.3], [0.3, 0.3, 0.5])  # p 0.038
  assert verdicts.decide(t, direction=1)[0] is True
  assert verdicts.decide(t, direction=-1)[0] is False
  holds, strength = verdicts.decide(t, direction=1, adjusted_p=0.29, family=6)
  assert holds is None
  assert strength.startswith("paired t(2) = 5.00, p = 0.038, Holm-adjusted p = 0.29 over 6 "
                             "comparisons, 3 seeds")
  assert strength.endswith(": not resolved with 3 seeds")
  zero = verdicts.paired_test([0.1, 0.2], [0.1, 0.2])
  assert zero["p"] == 1.0 and verdicts.decide(zero, direction=1)[0] is None
  with pytest.raises(ValueError, match="paired"):
    verdicts.paired_test([0.1, 0.2], [0.1])


def test_one_seed_is_indicative_and_infinities_leave_the_test_undefined():
  one = verdicts.paired_test([0.5], [0.4])
  assert one["p"] is None and one["reason"] == verdicts.INDICATIVE
  assert verdicts.decide(one, direction=-1) == (True, verdicts.INDICATIVE)
  assert verdicts.decide(one, direction=-1, sampling=0.1)[0] is None  # Within 2 SE of noise.
  inf = verdicts.paired_test([8.0, math.inf], [math.inf, math.inf])
  assert inf["values"] == [math.inf, 0.0] and inf["p"] is None
  holds, strength = verdicts.decide(inf, direction=1)
  assert holds is None and "infinite" in strength and "not resolved with 2 seeds" in strength


def test_threshold_is_a_one_sided_t_test_against_the_bound():
  t = verdicts.threshold([0.95, 0.94, 0.96], at_least=0.9)
  # Margin 0.05 +- 0.01 (sd): t = 0.05 / (0.01 / sqrt 3) = 8.66, one-sided p = t.sf(8.66, 2).
  assert t["statistic"] == pytest.approx(0.05 / (0.01 / math.sqrt(3)))
  assert t["p"] == pytest.approx(stats.t.sf(0.05 / (0.01 / math.sqrt(3)), 2))
  assert verdicts.decide(t, direction=1)[0] is True
  short = verdicts.threshold([0.95, 0.94, 0.96], at_most=0.5)  # Far above "at most 0.5".
  assert verdicts.decide(short, direction=1)[0] is False
  assert verdicts.decide(verdicts.threshold([0.9], at_least=0.9), direction=1) == (
      True, verdicts.INDICATIVE)  # One seed at the bound meets it.


def _cmp(a, b, av, bv):
  return {"a": a, "b": b, "measure": "unbiased", "a_values": av, "b_values": bv}


def test_comparisons_of_identical_runs_count_once():
  grey = [0.93, 0.94]
  fs = [_cmp("p/m/r1/recolor", "p/m/r1/grayscale", [0.89, 0.90], grey),
        _cmp("p/m/r2/recolor", "p/m/r2/grayscale", [0.89, 0.90], grey),
        _cmp("p/m/r1/erm", "p/m/r1/recolor", [0.20, 0.22], [0.89, 0.90])]
  merged = verdicts.dedupe(fs)
  assert len(merged) == 2 and merged[0]["also"] == ["p/m/r2/recolor vs p/m/r2/grayscale"]
  assert "also" not in fs[0]  # The input is left as it was.
  # The same two runs asked twice (the leader against the runner-up, and the loss against the
  # data): one comparison, read both ways.
  twice = [{**fs[2], "differ_in": "the method"}, {**fs[2], "differ_in": "the loss"}]
  once = verdicts.dedupe(twice)
  assert len(once) == 1 and once[0]["also_differ_in"] == ["the loss"] and "also" not in once[0]
  tests = [(verdicts.paired_test(f["a_values"], f["b_values"]), 1, None) for f in merged]
  judged = verdicts.judge(merged, tests)
  assert [f["family"] for f in judged] == [2, 2]  # Not 3: the duplicate is one comparison.
  assert judged[0]["p_holm"] == pytest.approx(
      verdicts.holm([t[0]["p"] for t in tests])[0])


def test_an_underfit_control_is_untestable_and_leaves_the_family():
  cheater = [0.94, 0.96]  # Mean 0.95: the bound is 0.9 x 0.95 = 0.855.
  assert verdicts.underfit([0.86, 0.99], cheater) is None  # Every seed at or above the bound.
  assert verdicts.underfit(None, cheater) is None and verdicts.underfit([0.2], None) is None
  low = verdicts.underfit([0.576, 0.286, 0.91], cheater, control="the λ = 0 control",
                          reference="the cheater")
  assert isinstance(low, verdicts.Untestable)
  assert low.reason == ("the λ = 0 control underfits (train 57.6%, 28.6%: 2 of 3 seeds below "
                        "85.5% = 90% of the cheater's 95.0%)")
  assert "its one seed" in verdicts.underfit([0.5], cheater).reason
  with pytest.raises(ValueError, match="fraction"):
    verdicts.underfit([0.5], cheater, fraction=0.0)
  paired = verdicts.paired_test([0.1, 0.2, 0.3], [0.3, 0.3, 0.5])  # p 0.0377.
  rows = [{"claim": c} for c in "abc"]
  got = verdicts.judge(rows, [(paired, 1, None), low, (paired, 1, None)])
  assert got[1]["holds"] is None and got[1]["p"] is None and got[1]["p_holm"] is None
  assert got[1]["strength"] == "untestable: " + low.reason
  # Two tests left in the family, not three: Holm doubles the smaller p, not triples it.
  assert got[0]["family"] == got[1]["family"] == 2
  assert got[0]["p_holm"] == pytest.approx(2 * paired["p"]) and got[0]["holds"] is None
  assert verdicts.judge(rows[:2], [(paired, 1, None), low])[0]["holds"] is True
