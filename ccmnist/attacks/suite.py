"""The attack suite of one model, AutoAttack's standard version in spirit, its gradient-masking
checks, randomized-smoothing certificates, and the clean confidence beside the study's p > 0.9
criterion. numpy in, dicts of plain numbers out.

Suite (untargeted robust accuracy at eps, Linf, the true labels): APGD-CE; targeted APGD-DLR
toward each of the `dlr_targets` classes the clean logits rank highest after the label (the
true label as DLR's source); Square. Each attack runs on every image, so that each one's robust
accuracy alone can be reported and Square's success compared with the white-box attacks' (the
black-box check); the worst case (an image counts as robust only if no attack fooled it) is what
running Square on what the others left would give. The study's targeted PGD sits beside.
Targeted (the study's setting: toward the stage's targets, argmax success): APGD-CE and APGD-DLR
toward the targets; the worst case unites them with PGD's.

Masking checks (Athalye et al. 2018; Carlini et al. 2019), each (holds, what was measured):
  grey     APGD-CE at an eps that reaches a grey image (grey_eps) leaves accuracy <= zero_tol;
  black    Square's success never exceeds the white-box attacks' (by more than tol);
  transfer PGD crafted on another model never succeeds more than on this one white-box (argmax;
           the stage's transfer matrix);
  budget   more steps and restarts do not raise APGD-CE's robust accuracy (by more than tol).
"""

import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.attacks import apgd as apgd_lib
from ccmnist.attacks import smoothing
from ccmnist.attacks import square as square_lib
from ccmnist.util import batches

CHECKS = ("grey", "black", "transfer", "budget")


def _predict(model, params, x, bs):
  return batches.map_batches(lambda xb: jnp.argmax(model.apply({"params": params}, xb), -1),
                             [x], batch_size=bs)


def _logits(model, params, x, bs):
  return batches.map_batches(lambda xb: model.apply({"params": params}, xb), [x], batch_size=bs)


def _timed(name: str, n: int, fn):
  """fn(), logged with its images per second: the suite is the attack stage's long part."""
  t0 = time.perf_counter()
  out = fn()
  dt = time.perf_counter() - t0
  logging.info("suite %s: %d images in %.1f s (%.0f images/s)", name, n, dt, n / max(dt, 1e-9))
  return out


def _fooled(model, params, x, labels, bs, attack, key, *, targeted=False, name="attack"):
  """Per image: did `attack(x_batch, labels_batch, key_b)` succeed (bool [N])."""
  def one(b, xb, yb):
    adv = attack(xb, yb, jax.random.fold_in(key, b))
    pred = jnp.argmax(model.apply({"params": params}, adv), -1)
    return pred == yb if targeted else pred != yb
  return _timed(name, len(x), lambda: batches.map_batches(
      one, [x, labels], batch_size=bs, with_index=True).astype(bool))


def clean_confidence(model, params, images, *, threshold: float, batch_size: int) -> dict:
  """How confident a model is on the clean images it is attacked on: the mean max-softmax, and
  the share of images whose max-softmax exceeds `threshold` (a model that is rarely that sure of
  anything can rarely be pushed past the study's p > threshold criterion either)."""
  x = np.asarray(images, np.float32)
  logits = _logits(model, params, x, min(int(batch_size), len(x)))
  p_max = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)).max(-1)
  return {"mean_max_softmax": float(p_max.mean()),
          "share_above_threshold": float(np.mean(p_max > threshold)),
          "threshold": float(threshold), "num_images": len(x)}


def top_targets(logits, labels, k: int) -> np.ndarray:
  """[k, N]: the k classes of highest clean logit other than the label, best first."""
  z = np.where(np.eye(logits.shape[1], dtype=bool)[labels], -np.inf, logits)
  return np.argsort(-z, axis=1, kind="stable")[:, :k].T.astype(np.int32)


def run_suite(model, params, images, labels, targets, *, cfg, key, pgd_targeted_ok=None) -> dict:
  """The suite and the masking checks' own measurements on one model.

  images [N, H, W, C] pixels, labels [N] true labels, targets [N] the stage's targets.
  cfg: configs/attack.py's `suite` block. pgd_targeted_ok [N] bool: the study's PGD's argmax
  success on the same images (None: not reported). Returns plain numbers and per-image masks.
  """
  eps, steps, bs = float(cfg.eps), int(cfg.steps), min(int(cfg.batch_size), len(images))
  x, y, t = (np.asarray(images, np.float32), np.asarray(labels, np.int32),
             np.asarray(targets, np.int32))
  logits = _logits(model, params, x, bs)
  correct = logits.argmax(1) == y
  k = iter(range(1000))
  nk = lambda: jax.random.fold_in(key, next(k))
  ap = lambda **kw: lambda xb, yb, kb: apgd_lib.apgd(model, params, xb, yb, key=kb, **kw)

  fooled = {"apgd_ce": _fooled(model, params, x, y, bs, ap(eps=eps, steps=steps, loss="ce",
                                                              restarts=int(cfg.restarts)), nk(),
                                 name="APGD-CE")}
  dlr = np.zeros(len(x), bool)

  def dlr_t(b, xb, yb, tb):
    """Targeted DLR toward tb, the true label yb its source; success = misclassified."""
    adv = apgd_lib.apgd(model, params, xb, tb, eps=eps, steps=steps, loss="dlr", targeted=True,
                        restarts=int(cfg.restarts), sources=yb,
                        key=jax.random.fold_in(key, 500 + b))
    return jnp.argmax(model.apply({"params": params}, adv), -1) != yb

  for i, tk in enumerate(top_targets(logits, y, int(cfg.dlr_targets))):
    dlr |= _timed(f"APGD-T DLR target {i + 1}", len(x), lambda tk=tk: batches.map_batches(
        dlr_t, [x, y, tk], batch_size=bs, with_index=True).astype(bool))
  fooled["apgd_t_dlr"] = dlr
  sq = lambda xb, yb, kb: square_lib.square(model, params, xb, yb, eps=eps,
                                            queries=int(cfg.square_queries), key=kb,
                                            p_init=float(cfg.square_p_init))
  fooled["square"] = _fooled(model, params, x, y, bs, sq, nk(), name="Square")

  robust = {name: correct & ~f for name, f in fooled.items()}
  white = fooled["apgd_ce"] | fooled["apgd_t_dlr"]
  worst = correct & ~white & ~fooled["square"]
  out = {"num_images": len(x), "eps": eps, "clean_accuracy": float(correct.mean()),
         "robust_accuracy": {n: float(r.mean()) for n, r in robust.items()},
         "worst_robust_accuracy": float(worst.mean()),
         "square_only": int(np.sum(correct & fooled["square"] & ~white))}

  # Targeted, the study's setting: argmax reaches the target.
  tgt = {loss: _fooled(model, params, x, t, bs, ap(eps=eps, steps=steps, loss=loss,
                                                   targeted=True), nk(), targeted=True,
                 name=f"targeted APGD-{loss.upper()}")
         for loss in ("ce", "dlr")}
  worst_t = tgt["ce"] | tgt["dlr"]
  out["targeted"] = {"apgd_ce": float(tgt["ce"].mean()), "apgd_dlr": float(tgt["dlr"].mean())}
  if pgd_targeted_ok is not None:
    pgd_ok = np.asarray(pgd_targeted_ok, bool)[:len(x)]
    out["targeted"]["pgd"] = float(pgd_ok.mean())
    worst_t = worst_t | pgd_ok
  out["targeted"]["worst"] = float(worst_t.mean())

  # Masking checks' measurements.
  grey = _fooled(model, params, x, y, bs, ap(eps=float(cfg.grey_eps), steps=steps, loss="ce"),
                 nk(), name="APGD-CE at the grey eps")
  more = _fooled(model, params, x, y, bs, ap(eps=eps, steps=int(cfg.check_steps), loss="ce",
                                              restarts=int(cfg.check_restarts)), nk(),
                 name="APGD-CE, more steps and restarts")
  out["masking"] = {
      "grey_eps": float(cfg.grey_eps), "grey_accuracy": float((correct & ~grey).mean()),
      "white_success": float((correct & white).mean()),
      "black_success": float((correct & fooled["square"]).mean()),
      "more_steps": {"steps": int(cfg.check_steps), "restarts": int(cfg.check_restarts),
                     "robust_accuracy": float((correct & ~more).mean())}}
  return out


def masking_checks(suite_of: dict, transfer: dict | None, *, tol: float, zero_tol: float) -> dict:
  """{model: {check: {'holds', 'measured'}}} from every model's run_suite output and the
  stage's transfer matrix ({'names', 'success_argmax'} [source][evaluated on])."""
  out = {}
  for name, s in suite_of.items():
    m = s["masking"]
    ra = s["robust_accuracy"]["apgd_ce"]
    checks = {
        "grey": {"holds": m["grey_accuracy"] <= zero_tol,
                 "measured": f"accuracy {100 * m['grey_accuracy']:.1f}% at eps {m['grey_eps']:g}"},
        "black": {"holds": m["black_success"] <= m["white_success"] + tol,
                  "measured": f"Square {100 * m['black_success']:.1f}% vs white-box "
                              f"{100 * m['white_success']:.1f}%, {s['square_only']} images "
                              "only Square breaks"},
        "budget": {"holds": m["more_steps"]["robust_accuracy"] <= ra + tol,
                   "measured": f"APGD-CE {m['more_steps']['steps']} steps x "
                               f"{m['more_steps']['restarts']} restarts "
                               f"{100 * m['more_steps']['robust_accuracy']:.1f}% vs "
                               f"{100 * ra:.1f}%"}}
    if transfer and name in transfer.get("names", []):
      names, mat = transfer["names"], np.asarray(transfer["success_argmax"], np.float64)
      j = names.index(name)
      others = [(mat[i, j], names[i]) for i in range(len(names)) if i != j]
      if others:
        best, src = max(others)
        checks["transfer"] = {"holds": best <= mat[j, j] + tol,
                              "measured": f"best transfer {100 * best:.1f}% (from {src}) vs "
                                          f"white-box {100 * mat[j, j]:.1f}%"}
    out[name] = checks
  return out


def certify_model(model, params, images, labels, *, cfg, key) -> dict:
  """Certified accuracy against L2 radius at each sigma of cfg (configs/attack.py `smoothing`)."""
  radii = [float(r) for r in cfg.radii]
  out = {"radii": radii, "num_images": len(images), "sigmas": {}}
  for i, sigma in enumerate(cfg.sigmas):
    c = smoothing.certify(model, params, np.asarray(images, np.float32), sigma=float(sigma),
                          n0=int(cfg.n0), n=int(cfg.n), alpha=float(cfg.alpha),
                          key=jax.random.fold_in(key, i), chunk=int(cfg.chunk))
    correct = c["prediction"] == np.asarray(labels)
    out["sigmas"][f"{float(sigma):g}"] = {
        "sigma": float(sigma),
        "certified_accuracy": smoothing.certified_accuracy(c["prediction"], c["radius"], labels,
                                                           radii),
        "abstain": float(np.mean(c["prediction"] == smoothing.ABSTAIN)),
        "median_radius_correct": float(np.median(c["radius"][correct])) if correct.any()
        else 0.0}
  return out
