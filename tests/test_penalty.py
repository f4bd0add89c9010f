"""The input-gradient penalty as the run records it and the report judges it: the penalty a
train step reports on a linear model against its closed form and finite differences, the loss
terms results.json carries per grid point, and the penalty's findings and section on
hand-made records."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ccmnist.report import findings
from ccmnist.report import sections
from ccmnist.train import methods
from ccmnist.train import runs
from ccmnist.train import step as step_lib
from ccmnist.train import summaries
from configs import cheater
from configs import gradient_penalty
from configs import study as study_config

N, H, W, C = 4, 2, 3, 3
D = H * W * C


class Linear(nn.Module):
  """logits = W^T (x / 255) + b on [0, 255] pixels, as every model sees them."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(5)(x.reshape(x.shape[0], -1) / 255.0)


def test_the_recorded_penalty_is_the_mean_squared_unit_input_gradient():
  rng = np.random.default_rng(0)
  model = Linear()
  x = jnp.asarray(rng.uniform(0, 255, (N, H, W, C)), jnp.float32)
  y = jnp.asarray([0, 3, 3, 1], jnp.int32)
  params = model.init(jax.random.key(0), x)["params"]
  w = np.asarray(params["Dense_0"]["kernel"], np.float64)  # [D, 5]
  # d logit_y / d x for x in [0, 1] is column y of W: the penalty is the mean of its squares
  # over the N examples and D = H*W*C entries.
  by_hand = np.mean([np.mean(w[:, k] ** 2) for k in np.asarray(y)])
  # The same by central finite differences of the correct logit in unit inputs.
  f = lambda u: np.asarray(model.apply({"params": params}, u * 255.0), np.float64)
  u0, eps, fd = np.asarray(x, np.float64) / 255.0, 1e-3, []
  for n in range(N):
    for d in range(D):
      e = np.zeros(D)
      e[d] = eps
      du = e.reshape(H, W, C)
      plus, minus = u0[n:n + 1] + du, u0[n:n + 1] - du
      fd.append((f(plus)[0, y[n]] - f(minus)[0, y[n]]) / (2 * eps))
  assert np.mean(np.square(fd)) == pytest.approx(by_hand, rel=1e-2)
  lam = 7.0
  logits = f(u0)
  ce = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(N), np.asarray(y)])
  state = step_lib.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.0),
                                     extra={})
  _, m = step_lib.batch_step(state, {"images": x, "labels": y}, jnp.float32(lam),
                             model=model, method=methods.get("gradient_penalty"),
                             settings={"grad_scale": "unit"})
  assert float(m["penalty"]) == pytest.approx(by_hand, rel=1e-5)
  assert float(m["ce"]) == pytest.approx(ce, rel=1e-5)
  assert float(m["loss"]) == pytest.approx(ce + lam * by_hand, rel=1e-5)


def test_results_carry_each_grid_points_loss_terms_and_their_ratio():
  c = cheater.get_config("tiny")
  c.update_from_flattened_dict({"loss.lam_grid": (0.0, 10.0), "num_seeds": 2})
  # Replica = g * 2 + s: lambda 0 is replicas 0, 1; lambda 10 is 2, 3.
  row = {"epoch": 2, "epoch_time_s": 1.0, "accuracy": {"test_hard": [0.1, 0.2, 0.3, 0.4]},
         "train_ce": [0.5, 0.4, 1.0, 2.0], "train_penalty": [0.01, 0.02, 0.03, 0.01]}
  terms = summaries.loss_terms(row, [0.0, 0.0, 10.0, 10.0])
  assert [t["penalty_ratio"] for t in terms] == pytest.approx([0.0, 0.0, 0.3, 0.05])
  res = runs.summarize(c, [{**row, "epoch": 1}, row])
  assert res["grid"][1]["penalty_ratio"]["values"] == pytest.approx([0.3, 0.05])
  assert res["grid"][1]["penalty_ratio"]["mean"] == pytest.approx(0.175)
  assert res["grid"][0]["train_penalty"]["values"] == pytest.approx([0.01, 0.02])
  assert res["replicas"][3]["train_ce"] == 2.0 and res["replicas"][3]["lam"] == 10.0
  old = {k: v for k, v in row.items() if k not in ("train_ce", "train_penalty")}
  assert "penalty_ratio" not in runs.summarize(c, [old])["grid"][0]  # A history without them.
  assert summaries.loss_terms({"train_ce": [0.0], "train_penalty": [1.0]}, [1.0])[0][
      "penalty_ratio"] is None


def test_the_fit_variant_changes_the_optimizer_and_grid_alone():
  study, fit = gradient_penalty.get_config("study"), gradient_penalty.get_config("fit")
  assert (fit.optim.name, fit.optim.lr, study.optim.name) == ("adam", 1e-3, "sgd")
  assert fit.loss.lam_grid == gradient_penalty.FIT_GRID and fit.loss.lam == study.loss.lam
  differ = {k for k, v in fit.to_dict().items() if v != study.to_dict()[k]}
  assert differ == {"optim", "loss"}
  assert gradient_penalty.get_config(None).to_dict() == study.to_dict()
  cfg = study_config.get_config("quick")
  assert cfg.runs.gradient_penalty.optim.name == "adam"
  assert cfg.runs.gradient_penalty_study.optim.to_dict() == gradient_penalty.get_config(
      "quick").optim.to_dict()


def _stat(values):
  return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)),
          "n": len(values), "values": list(values)}


def _gp_run(points: dict, lam=0.1) -> dict:
  """A run record: points {lam: (train per seed, test_hard per seed, penalty_ratio)}."""
  return {"downstream_lam": lam, "grid": [
      {"lam": g, "seeds": list(range(len(tr))),
       "accuracy": {"train": _stat(tr), "test_hard": _stat(hd)},
       "penalty_ratio": _stat([r] * len(tr))} for g, (tr, hd, r) in points.items()]}


FIT = {0.0: ([0.95, 0.96, 0.95], [0.10, 0.12, 0.11], 0.0),
       0.1: ([0.95, 0.96, 0.95], [0.10, 0.12, 0.11], 1e-3),
       10.0: ([0.95, 0.95, 0.94], [0.15, 0.18, 0.16], 0.08),
       1000.0: ([0.90, 0.91, 0.90], [0.30, 0.36, 0.33], 0.4)}
STUDY = {0.0: ([0.58, 0.29, 0.91], [0.08, 0.10, 0.06], 0.0),
         0.1: ([0.58, 0.29, 0.91], [0.08, 0.10, 0.06], 1e-3)}


def _res(**runs_):
  cheater_run = _gp_run({0.0: ([0.94, 0.95, 0.945], [0.06] * 3, 0.0)}, 0.0)
  return {"runs": {"cheater": cheater_run, **runs_}, "config": {"data": {"test_size": 10_000}},
          "attack": {"models": {}}}


def test_penalty_findings_at_the_studys_and_the_best_lambda_with_one_family():
  got = findings.penalty_findings(_res(gradient_penalty=_gp_run(FIT)))
  assert [f["runs"] for f in got] == [["gradient_penalty@0", "gradient_penalty@0.1"],
                                      ["gradient_penalty@0", "gradient_penalty@1000"]]
  study_lam, best = got
  assert "study's λ 0.1" in study_lam["claim"] and "best λ 1000" in best["claim"]
  # Every lambda > 0 compared is in the family, the best chosen after looking included.
  assert study_lam["family"] == best["family"] == 3
  assert "Holm over all 3 penalty comparisons (every λ > 0)" in best["rule"]
  assert study_lam["holds"] is None  # No difference at all at lambda 0.1.
  assert best["holds"] is True and best["p_holm"] >= best["p"]  # +0.22 +/- 0.02 over 3 seeds.
  assert "λ·penalty/CE 0.1: 0.001, 10: 0.08, 1000: 0.4" in best["measured"]


def test_a_best_lambda_that_is_the_studys_is_one_finding():
  best_at_study = {**FIT, 0.1: ([0.95, 0.96, 0.95], [0.40, 0.42, 0.41], 0.01)}
  got = findings.penalty_findings(_res(gradient_penalty=_gp_run(best_at_study)))
  assert len(got) == 1 and got[0]["runs"] == ["gradient_penalty@0", "gradient_penalty@0.1"]
  assert "at the study's λ 0.1, also its best λ > 0 on test_hard (trained to fit" in got[0][
      "claim"]
  assert got[0]["family"] == 3  # The choice still counts every λ > 0 compared.


def test_penalty_findings_are_untestable_when_the_control_underfits():
  got = findings.penalty_findings(_res(gradient_penalty=_gp_run(FIT),
                                       gradient_penalty_study=_gp_run(STUDY)))
  assert len(got) == 3
  fit_rows, study_row = got[:2], got[2]
  assert study_row["runs"] == ["gradient_penalty_study@0", "gradient_penalty_study@0.1"]
  assert study_row["strength"].startswith(
      "untestable: the λ = 0 control underfits (train 58.0%, 29.0%: 2 of 3 seeds")
  assert study_row["holds"] is None and study_row["p_holm"] is None
  assert all(f["family"] == 3 for f in fit_rows)  # The untestable one is out of the family.
  # A missing run: its row at the study's lambda, not measured.
  none = findings.penalty_findings({"runs": {}})
  assert [f["strength"] for f in none] == ["not measured"]


def test_findings_hold_the_penalty_rows_between_the_claims_and_the_attack_suite():
  res = _res(gradient_penalty=_gp_run(FIT))
  claims = [f["claim"] for f in findings.findings(res)]
  penalty = [i for i, c in enumerate(claims) if c.startswith("The input-gradient penalty")]
  assert len(penalty) == 2 and penalty == list(range(penalty[0], penalty[0] + 2))
  assert not any("penalty" in c for c in claims[:penalty[0]])


def test_the_penalty_section_prints_the_ratio_and_why_the_study_does_not_reproduce():
  res = _res(gradient_penalty=_gp_run(FIT), gradient_penalty_study=_gp_run(STUDY))
  res["findings"] = findings.penalty_findings(res)
  lines = []
  sections.section_penalty(res, lines)
  md = "\n".join(lines)
  assert md.startswith("## 2a. Input-gradient penalty")
  assert "| λ | train | test_hard | λ·penalty / CE |" in md
  assert "| 1000 | 90.3 ± 0.6 | 33.0 ± 3.0 | 0.4 |" in md
  assert "| 0.1 | 59.3 ± 31.0 | 8.0 ± 2.0 | 0.001 |" in md  # The study-settings run.
  assert "untestable: the λ = 0 control underfits" in md
  assert "weighs 1.0e-03 of the cross-entropy" in md and "+0.0 points" in md
  assert "(λ 1000), test_hard is 33.0 ± 3.0." in md
  lines = []
  sections.section_penalty({"runs": {}}, lines)
  assert lines == []
  lines = []
  sections.section_penalty({"runs": {"gradient_penalty": _gp_run(
      {0.0: FIT[0.0], 10.0: FIT[10.0]})}}, lines)
  assert "lacks the study's λ 0.1" in "\n".join(lines)
