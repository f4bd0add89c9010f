"""Randomized smoothing (Cohen, Rosenfeld and Kolter 2019): PREDICT and CERTIFY, L2.

The smoothed classifier g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c) of a base classifier f.
Images are NHWC float32 pixels in [0, 255] and sigma and the certified radii are in the same
pixel units (sigma 63.75 = 0.25 of the [0, 1] scale). Noisy samples are not clipped.

  certify: n0 samples pick the class cA; n more count it; pA_lower = the one-sided (1 - alpha)
           Clopper-Pearson lower bound on P(f = cA) (scipy.stats.beta); radius
           sigma * Phi^-1(pA_lower) when pA_lower > 1/2, else abstain (-1, radius 0).
  predict: the top two counts nA, nB of n samples; abstain unless a two-sided binomial test
           (scipy.stats.binomtest) of nA in nA + nB at p = 1/2 rejects at alpha.

The class counts are one compiled program per (model, shapes): the noise samples are drawn in
chunks of `chunk` per image under lax.fori_loop, each chunk one forward pass of N x chunk images.
A model trained with Gaussian noise (train method 'gaussian_noise') is the base classifier the
method calls for; any model can be certified.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

ABSTAIN = -1


def counts_program(params, images, key, *, model, sigma: float, num: int, chunk: int,
                   num_classes: int):
  """Class counts [N, K] of f over num noisy copies of each image (num a multiple of chunk)."""
  x0 = images.astype(jnp.float32)
  n = x0.shape[0]

  def body(i, counts):
    noise = jax.random.normal(jax.random.fold_in(key, i), (n, chunk) + x0.shape[1:])
    x = (x0[:, None] + sigma * noise).reshape((n * chunk,) + x0.shape[1:])
    pred = jnp.argmax(model.apply({"params": params}, x), -1).reshape(n, chunk)
    return counts + jnp.sum(jax.nn.one_hot(pred, num_classes, dtype=jnp.int32), axis=1)

  return jax.lax.fori_loop(0, num // chunk, body, jnp.zeros((n, num_classes), jnp.int32))


_counts_jit = jax.jit(counts_program, static_argnames=("model", "sigma", "num", "chunk",
                                                       "num_classes"))


def sample_counts(model, params, images, *, sigma: float, num: int, key, chunk: int = 100,
                  num_classes: int = 10) -> np.ndarray:
  """Class counts [N, K] over `num` noisy copies per image (numpy int64)."""
  if sigma <= 0 or num < 1 or chunk < 1:
    raise ValueError(f"sigma must be > 0 and num, chunk >= 1; got {sigma}, {num}, {chunk}.")
  chunk = min(chunk, num)
  full, rest = divmod(num, chunk)
  x = jnp.asarray(images, jnp.float32)
  counts = np.asarray(_counts_jit(params, x, key, model=model, sigma=float(sigma),
                                  num=full * chunk, chunk=chunk, num_classes=num_classes),
                      np.int64)
  if rest:
    counts += np.asarray(_counts_jit(params, x, jax.random.fold_in(key, 1 << 20), model=model,
                                     sigma=float(sigma), num=rest, chunk=rest,
                                     num_classes=num_classes), np.int64)
  return counts


def lower_confidence_bound(n_a, n: int, alpha: float):
  """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion (n_a of n)."""
  n_a = np.asarray(n_a)
  with np.errstate(invalid="ignore"):
    lo = stats.beta.ppf(alpha, n_a, n - n_a + 1)
  return np.where(n_a > 0, lo, 0.0)


def max_radius(sigma: float, n: int, alpha: float) -> float:
  """The largest L2 radius CERTIFY can give with n noise draws: all n votes for one class bound
  p_A below by alpha ** (1 / n), so no image is certified beyond sigma * Phi^-1 of it."""
  return float(sigma * stats.norm.ppf(lower_confidence_bound(n, n, alpha)))


def _check(sigma, n0, n, alpha):
  if sigma <= 0 or n < 1 or n0 < 1 or not 0.0 < alpha < 1.0:
    raise ValueError(f"need sigma > 0, n0 >= 1, n >= 1 and 0 < alpha < 1; got sigma {sigma}, "
                     f"n0 {n0}, n {n}, alpha {alpha}.")


def certify(model, params, images, *, sigma: float, n0: int, n: int, alpha: float, key,
            chunk: int = 100, num_classes: int = 10) -> dict:
  """CERTIFY per image: {'prediction' [N] (ABSTAIN = -1), 'radius' [N] (L2, pixel units; 0 when
  abstaining), 'p_lower' [N], 'counts' [N] (of the predicted class among n)}."""
  _check(sigma, n0, n, alpha)
  k0, k1 = jax.random.split(key)
  c0 = sample_counts(model, params, images, sigma=sigma, num=n0, key=k0, chunk=chunk,
                     num_classes=num_classes)
  c_a = c0.argmax(1)
  counts = sample_counts(model, params, images, sigma=sigma, num=n, key=k1, chunk=chunk,
                         num_classes=num_classes)
  n_a = counts[np.arange(len(c_a)), c_a]
  p_lower = lower_confidence_bound(n_a, n, alpha)
  ok = p_lower > 0.5
  radius = np.where(ok, sigma * stats.norm.ppf(np.where(ok, p_lower, 0.75)), 0.0)
  return {"prediction": np.where(ok, c_a, ABSTAIN), "radius": radius, "p_lower": p_lower,
          "counts": n_a}


def predict(model, params, images, *, sigma: float, n: int, alpha: float, key, chunk: int = 100,
            num_classes: int = 10) -> np.ndarray:
  """PREDICT per image: the smoothed class [N], ABSTAIN (-1) where the test does not reject."""
  _check(sigma, 1, n, alpha)
  counts = sample_counts(model, params, images, sigma=sigma, num=n, key=key, chunk=chunk,
                         num_classes=num_classes)
  top2 = np.argsort(-counts, axis=1, kind="stable")[:, :2]
  n_a = counts[np.arange(len(counts)), top2[:, 0]]
  n_b = counts[np.arange(len(counts)), top2[:, 1]]
  p = np.array([stats.binomtest(int(a), int(a + b), 0.5).pvalue for a, b in zip(n_a, n_b)])
  return np.where(p <= alpha, top2[:, 0], ABSTAIN)


def certified_accuracy(prediction, radius, labels, radii) -> list:
  """Certified accuracy at each L2 radius of `radii`: correct and certified at least that far."""
  prediction, radius, labels = map(np.asarray, (prediction, radius, labels))
  correct = prediction == labels
  return [float(np.mean(correct & (radius >= r))) for r in np.asarray(radii, np.float64)]
