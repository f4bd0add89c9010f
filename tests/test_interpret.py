"""Tests of ccmnist.interpret: Grad-CAM and attributions, feature visualization, top-k images."""

import functools
import json
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ccmnist import models
from ccmnist.data import coloring
from ccmnist.data import splits as splits_lib
from ccmnist.interpret import featviz
from ccmnist.interpret import gradcam as G
from ccmnist.interpret import topk as topk_lib
from ccmnist.models.layers import expose


# ---------------------------------------------------------------- tiny models

class OneConv(nn.Module):
  """conv 4x4 stride 4 (3 -> 2 channels) exposed as 'conv0'; logits = V @ mean_ij(A).

  d logit_c / d A^k_ij = V[c, k] / 49, so Grad-CAM's channel weights are V[c] / 49.
  """

  @nn.compact
  def __call__(self, x):
    x = x / 255.0
    a = nn.Conv(2, (4, 4), strides=(4, 4), padding="VALID", name="conv")(x)
    a = expose(self, "conv0", a)
    return nn.Dense(3, use_bias=False, name="head")(a.mean(axis=(1, 2)))


class PixelConv(nn.Module):
  """A 1x1 conv (3 -> 3 channels) exposed as 'conv0', global average pooled to logits."""

  @nn.compact
  def __call__(self, x):
    a = expose(self, "conv0", nn.Conv(3, (1, 1), name="conv")(x / 255.0))
    return jax.nn.relu(a).mean(axis=(1, 2))


def torch_bilinear(m, size=28):
  """torch.nn.functional.interpolate(mode='bilinear', align_corners=False), in numpy."""
  h = m.shape[0]
  src = np.maximum((np.arange(size) + 0.5) * h / size - 0.5, 0.0)
  i0 = np.floor(src).astype(int)
  i1 = np.minimum(i0 + 1, h - 1)
  lam = src - i0
  rows = m[i0] * (1 - lam)[:, None] + m[i1] * lam[:, None]
  return rows[:, i0] * (1 - lam)[None] + rows[:, i1] * lam[None]


def one_conv_params():
  rng = np.random.default_rng(0)
  return {"conv": {"kernel": jnp.asarray(rng.normal(size=(4, 4, 3, 2)), jnp.float32),
                   "bias": jnp.asarray([0.1, -0.2], jnp.float32)},
          "head": {"kernel": jnp.asarray([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]], jnp.float32)}}


@functools.lru_cache(maxsize=None)
def synthetic_colored(n=512, seed=0):
  """Colored bar digits (rho 0.95): a quick stand-in dataset."""
  grey, labels = splits_lib.synthetic_digits(n, np.random.default_rng(seed))
  rng = np.random.default_rng(seed + 1)
  colors = splits_lib.assign_colors(labels, 0.95, rng)
  return coloring.colorize(grey, colors, rng), labels, colors


@functools.lru_cache(maxsize=None)
def trained_cheater():
  """The cheater CNN after 100 Adam steps on synthetic colored digits; (model, params, rand).

  Colors alone predict most labels of this data (rho 0.95), so a few steps suffice to learn them.
  """
  images, labels, _ = synthetic_colored()
  model = models.get_model("cheater", num_classes=10, conv_impl="patches")
  params = models.init_params(model, jax.random.key(0), (28, 28, 3))
  tx = optax.adam(3e-3)
  x_all, y_all = jnp.asarray(images, jnp.float32), jnp.asarray(labels)

  @jax.jit
  def step(params, opt_state, idx):
    def loss(p):
      logits = model.apply({"params": p}, x_all[idx])
      return optax.softmax_cross_entropy_with_integer_labels(logits, y_all[idx]).mean()
    g = jax.grad(loss)(params)
    updates, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = tx.init(params)
  for i in range(100):
    idx = jax.random.randint(jax.random.key(i), (64,), 0, len(labels))
    params, opt_state = step(params, opt_state, idx)
  acc = float(jnp.mean(jnp.argmax(model.apply({"params": params}, x_all), -1) == y_all))
  assert acc > 0.9, f"the test model did not train (accuracy {acc})"
  rand = models.init_params(model, jax.random.key(123), (28, 28, 3))
  return model, params, rand


# ---------------------------------------------------------------- Grad-CAM

def test_gradcam_matches_hand_computation():
  model, params = OneConv(), one_conv_params()
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 255, (3, 28, 28, 3)).astype(np.float32)
  targets = np.array([0, 1, 2])
  # By hand: A = conv(x / 255), alpha = V[:, c] / 49, cam = relu(sum_k alpha_k A^k).
  k, b = np.asarray(params["conv"]["kernel"]), np.asarray(params["conv"]["bias"])
  patches = (x / 255.0).reshape(3, 7, 4, 7, 4, 3).transpose(0, 1, 3, 2, 4, 5)
  a = np.einsum("nijabc,abck->nijk", patches, k) + b
  v = np.asarray(params["head"]["kernel"])
  raw = np.maximum(np.einsum("nijk,nk->nij", a, v[:, targets].T / 49.0), 0.0)
  lo, hi = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
  norm = (raw - lo) / (hi - lo + 1e-8)
  expected = np.stack([torch_bilinear(m) for m in norm])

  got = G.gradcam(model, {"params": params}["params"], x, targets, layer="conv0")
  assert got.shape == (3, 28, 28) and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), expected, atol=2e-5)
  np.testing.assert_allclose(np.asarray(G.gradcam_lowres(model, params, x, targets,
                                                         layer="conv0", normalize=False)),
                             raw, rtol=1e-4, atol=1e-6)
  unnorm = G.gradcam(model, params, x, targets, layer="conv0", normalize=False)
  np.testing.assert_allclose(np.asarray(unnorm), np.stack([torch_bilinear(m) for m in raw]),
                             rtol=1e-4, atol=1e-6)
  assert raw.max() > 0 and (raw == 0).any()  # The ReLU did something in this example.


def test_gradcam_is_zero_where_the_model_looks_at_nothing():
  # Class 0 reads only channel 0 of the 1x1 conv, which only sees the red channel; blanking
  # red everywhere except a square leaves Grad-CAM zero outside it.
  model = PixelConv()
  params = {"conv": {"kernel": jnp.asarray(np.diag([1.0, 0.0, 0.0])[None, None], jnp.float32),
                     "bias": jnp.zeros(3)}}
  x = np.zeros((1, 28, 28, 3), np.float32)
  x[0, 8:16, 8:16, 0] = 200.0
  x[0, :, :, 1] = 255.0  # Green everywhere: ignored by class 0.
  cam = np.asarray(G.gradcam_lowres(model, params, x, np.array([0]), layer="conv0"))[0]
  assert cam[8:16, 8:16].min() > 0.99
  mask = np.ones((28, 28), bool)
  mask[8:16, 8:16] = False
  assert np.abs(cam[mask]).max() == 0.0


def test_gradcam_any_layer_shapes_and_no_recompile(caplog):
  model, params, _ = trained_cheater()
  x = synthetic_colored()[0][:4].astype(np.float32)
  t = np.array([0, 1, 2, 3])
  for layer in ("conv0", "conv1", "conv2"):
    m = G.gradcam(model, params, x, t, layer=layer)
    assert m.shape == (4, 28, 28)
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
  with caplog.at_level(logging.WARNING), jax.log_compiles():
    for shift in (1.0, 2.0, 3.0):  # New values, same shapes: the compiled program is reused.
      G.gradcam(model, params, x + shift, t, layer="conv2").block_until_ready()
  assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
  with pytest.raises(ValueError, match="exposed layers: conv0, conv1, conv2"):
    G.gradcam(model, params, x, t, layer="conv7")
  with pytest.raises(ValueError, match="one target class per image"):
    G.gradcam(model, params, x, t[:2])


def test_activation_gradient_matches_finite_differences():
  model = models.get_model("cheater", num_classes=10, conv_impl="lax")
  params32 = models.init_params(model, jax.random.key(3), (28, 28, 3))
  with jax.enable_x64(True):  # float64: central differences accurate to ~1e-9.
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params32)
    x = jnp.asarray(np.random.default_rng(2).uniform(0, 255, (2, 28, 28, 3)), jnp.float64)
    t = jnp.asarray([3, 7])
    for layer in ("conv1", "conv2"):
      acts, grads, logits = G.layer_activation_and_grad(model, params, x, t, layer=layer)
      zeros = G.zero_perturbations(model, params, x)
      assert acts.shape == zeros[layer].shape and grads.dtype == jnp.float64

      def score(z, layer=layer, zeros=zeros):
        out = model.apply({"params": params, "perturbations": {**zeros, layer: z}}, x)
        return np.asarray(jnp.take_along_axis(out, t[:, None], 1)[:, 0])

      np.testing.assert_allclose(score(zeros[layer]), np.asarray(
          jnp.take_along_axis(logits, t[:, None], 1)[:, 0]), rtol=1e-12)
      rng = np.random.default_rng(0)
      eps = 1e-5
      for _ in range(6):
        pos = tuple(int(rng.integers(0, s)) for s in acts.shape[1:])
        for n in range(2):
          dz = np.zeros(acts.shape)
          dz[(n,) + pos] = eps
          fd = (score(zeros[layer] + dz) - score(zeros[layer] - dz))[n] / (2 * eps)
          np.testing.assert_allclose(float(grads[(n,) + pos]), fd, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- other attributions

def test_saliency_and_gradcam_plus_plus():
  model, params, _ = trained_cheater()
  x = synthetic_colored()[0][:6].astype(np.float32)
  t = np.arange(6)
  sal = np.asarray(G.saliency(model, params, x, t))
  g = np.asarray(G.input_gradient(model, params, jnp.asarray(x), jnp.asarray(t)))
  raw = np.abs(g).max(-1)
  np.testing.assert_allclose(sal, (raw - raw.min((1, 2), keepdims=True)) /
                             (np.ptp(raw, (1, 2), keepdims=True) + 1e-8), atol=1e-5)
  pp = np.asarray(G.gradcam_plus_plus(model, params, x, t))
  assert pp.shape == (6, 28, 28) and np.isfinite(pp).all() and pp.min() >= 0


def test_integrated_gradients_completeness_and_convergence():
  model, params, _ = trained_cheater()
  x = synthetic_colored()[0][:32].astype(np.float32)
  t = np.asarray(jnp.argmax(model.apply({"params": params}, jnp.asarray(x)), -1))
  # Completeness is checked relative to f(x) - f(black): keep images with a real change to explain.
  delta = np.asarray(G.target_logits(model, params, jnp.asarray(x), jnp.asarray(t))
                     - G.target_logits(model, params, jnp.zeros_like(x), jnp.asarray(t)))
  keep = np.flatnonzero(np.abs(delta) > 0.3)[:8]
  assert len(keep) == 8, delta
  x, t = x[keep], t[keep]
  errors = {}
  for steps in (4, 64):
    attr = G.integrated_gradients(model, params, x, t, steps=steps)
    errors[steps] = G.ig_completeness(model, params, x, t, attr)
  c = errors[64]
  assert np.median(c["rel_error"]) < 0.02, c["rel_error"]
  assert c["abs_error"].mean() < errors[4]["abs_error"].mean()
  # A non-black baseline and the midpoint rule obey completeness too.
  base = np.full_like(x, 128.0)
  attr = G.integrated_gradients(model, params, x, t, baseline=base, steps=64, rule="midpoint")
  c = G.ig_completeness(model, params, x, t, attr, baseline=base)
  assert np.median(c["rel_error"]) < 0.03, c["rel_error"]


def test_integrated_gradients_exact_for_linear_model():
  model = OneConv()  # Linear in the input: IG = (x - x') * grad exactly, for any rule.
  params = one_conv_params()
  x = np.random.default_rng(5).uniform(0, 255, (2, 28, 28, 3)).astype(np.float32)
  t = np.array([1, 2])
  attr = G.integrated_gradients(model, params, x, t, steps=3, rule="left")
  grad = G.input_gradient(model, params, jnp.asarray(x), jnp.asarray(t))
  np.testing.assert_allclose(np.asarray(attr), x * np.asarray(grad), rtol=1e-4, atol=1e-7)
  c = G.ig_completeness(model, params, x, t, attr)
  assert c["abs_error"].max() < 1e-3


# ---------------------------------------------------------------- spread and sanity checks

def test_map_entropy():
  uniform = np.ones((1, 28, 28))
  onehot = np.zeros((1, 28, 28))
  onehot[0, 3, 4] = 0.7
  half = np.zeros((1, 28, 28))
  half[0, :14] = 2.0
  maps = np.concatenate([uniform, onehot, half, np.zeros((1, 28, 28))])
  h = G.map_entropy(maps)
  np.testing.assert_allclose(h[:3], [np.log(784), 0.0, np.log(392)], atol=1e-12)
  assert np.isnan(h[3])
  np.testing.assert_allclose(G.map_entropy(maps, normalized=True)[:3],
                             [1.0, 0.0, np.log(392) / np.log(784)])
  s = G.spread_summary(maps)
  assert s["num_all_zero"] == 1 and s["num_maps"] == 4
  np.testing.assert_allclose(s["entropy_nats_mean"], np.log(784 * 392) / 3)
  with pytest.raises(ValueError, match="non-negative"):
    G.map_entropy(-uniform)


def test_rankdata_and_spearman():
  np.testing.assert_array_equal(G.rankdata([10, 20, 20, 30, 5]), [2, 3.5, 3.5, 5, 1])
  a = np.random.default_rng(0).normal(size=200)
  assert G.spearman(a, np.exp(a)) == pytest.approx(1.0)
  assert G.spearman(a, -a ** 3) == pytest.approx(-1.0)
  # Hand formula without ties: 1 - 6 sum d^2 / (n (n^2 - 1)).
  b = np.random.default_rng(1).normal(size=200)
  d = G.rankdata(a) - G.rankdata(b)
  assert G.spearman(a, b) == pytest.approx(1 - 6 * (d ** 2).sum() / (200 * (200 ** 2 - 1)))
  assert np.isnan(G.spearman(np.ones(5), a[:5]))


def test_model_randomization_sanity_check():
  model, params, rand = trained_cheater()
  images, labels, _ = synthetic_colored()
  x = jnp.asarray(images[:32], jnp.float32)
  logits = model.apply({"params": params}, x)
  assert float(jnp.mean(jnp.argmax(logits, -1) == labels[:32])) > 0.9  # It did train.
  t = jnp.argmax(logits, -1)
  r = G.randomization_check(model, params, rand, x, t, methods=("gradcam", "saliency"))
  # Maps of the trained and the re-initialized model must differ (Adebayo et al. 2018).
  for name in ("gradcam", "saliency"):
    assert r[name]["spearman_mean"] < 0.6, r
  # Control: the same model against itself correlates perfectly.
  same = G.randomization_check(model, params, params, x[:4], t[:4], methods=("saliency",))
  assert same["saliency"]["spearman_mean"] == pytest.approx(1.0)
  stages = G.cascading_params(params, rand, ("Dense_0", "Conv_2"))
  assert [s[0] for s in stages] == ["Dense_0", "Conv_2"]
  assert stages[0][1]["Conv_2"] is params["Conv_2"] and stages[1][1]["Conv_2"] is rand["Conv_2"]


# ---------------------------------------------------------------- feature visualization

def test_featviz_matches_a_per_channel_reference_loop():
  model, params, _ = trained_cheater()
  key = jax.random.key(7)
  steps = 12
  r = featviz.visualize_layer(model, params, layer="conv1", image_shape=(28, 28, 3), key=key,
                              steps=steps, record_every=1)
  assert r["images"].shape == (16, 28, 28, 3) and r["trace"].shape == (steps, 16)
  # Reference: channel 5 alone, the study's loop written out (image in [0, 1] units, x 255).
  k_init, _ = jax.random.split(key)
  img = featviz.init_param(jax.random.split(k_init, 16)[5], param="pixel", init_std=0.1,
                           hw=(28, 28))
  tx = optax.adam(0.1)
  state = tx.init(img)

  def loss(img):
    _, s = model.apply({"params": params}, 255.0 * img[None], mutable=["intermediates"])
    return -s["intermediates"]["conv1"][0][0, ..., 5].mean() + 0.01 * jnp.mean(img ** 2)

  @jax.jit  # The same arithmetic as the loop written out, compiled once.
  def step(img, state):
    updates, state = tx.update(jax.grad(loss)(img), state, img)
    return optax.apply_updates(img, updates), state

  for _ in range(steps):
    img, state = step(img, state)
  np.testing.assert_allclose(r["images"][5], np.asarray(img), atol=2e-4)
  np.testing.assert_allclose(r["activation"][5], -loss(img) + 0.01 * jnp.mean(img ** 2),
                             rtol=1e-4, atol=1e-4)
  # The optimization raised every live channel's activation.
  assert (r["activation"] >= r["trace"][0] - 1e-4).all()
  assert (r["activation"] > r["trace"][0] + 1e-3).mean() > 0.5


def test_featviz_projection_keeps_valid_images():
  model, params, _ = trained_cheater()
  r = featviz.visualize_layer(model, params, layer="conv0", image_shape=(28, 28, 3),
                              key=jax.random.key(2), steps=20, project=True, record_every=1)
  assert r["images"].min() >= 0.0 and r["images"].max() <= 1.0
  assert r["images"].max() > 0.5  # Not stuck at the clipped initial noise.
  assert (r["activation"] > r["trace"][0] + 1e-3).mean() > 0.5  # Still maximizing.


def test_featviz_options():
  model, params, _ = trained_cheater()
  r = featviz.visualize_layer(model, params, layer="conv0", image_shape=(28, 28, 3),
                              key=jax.random.key(0), steps=8,
                              param="fourier", jitter=2, scales=(0.9, 1.0, 1.1),
                              record_every=4)
  assert r["images"].shape == (8, 28, 28, 3)
  assert r["images"].min() > 0.0 and r["images"].max() < 1.0  # Sigmoid output.
  assert np.isfinite(r["trace"]).all() and r["trace"].shape == (2, 8)
  with pytest.raises(ValueError, match="parametrization"):
    featviz.visualize_layer(model, params, layer="conv0", image_shape=(28, 28, 3),
                            key=jax.random.key(0), param="jpeg")


# ---------------------------------------------------------------- top-k

def test_top_k():
  model, params, _ = trained_cheater()
  images = synthetic_colored()[0][:40]
  tk = topk_lib.top_k(model, params, images, layer="conv2", k=5, batch_size=16)
  means = topk_lib.channel_means(model, params, images, layer="conv2", batch_size=40)
  assert tk["indices"].shape == (16, 5)
  np.testing.assert_array_equal(tk["indices"], np.argsort(-means, axis=0, kind="stable")[:5].T)
  # Batches of 16 pad the last one; the padding changes no image's value.
  np.testing.assert_array_equal(tk["values"], np.take_along_axis(means.T, tk["indices"], 1))
  assert (np.diff(tk["values"], axis=1) <= 0).all()


# ---------------------------------------------------------------- the pipeline

def test_interpret_runs_end_to_end(tmp_path):
  from ccmnist.interpret import run as interpret_run
  from ccmnist.train import loop
  from configs import cheater
  from configs import interpret

  # A bad runs string fails before anything is loaded or written.
  with pytest.raises(ValueError, match="name=workdir"):
    interpret_run.interpret_runs("justapath", interpret.get_config("tiny"), tmp_path / "bad")
  assert not (tmp_path / "bad").exists()

  run_dir = tmp_path / "run"
  loop.train_and_evaluate(cheater.get_config("tiny"), run_dir)
  cfg = interpret.get_config("tiny")
  with cfg.unlocked():
    cfg.featviz.layers = ("conv0",)
    cfg.representation.layers = ("conv2",)
    cfg.topk.layers = ("conv2",)
    cfg.sanity.methods = ("gradcam",)
  # 'a' names its one replica twice: two seeds whose measures must agree.
  out = interpret_run.interpret_runs({"a": (run_dir, [0, 0]), "b": str(run_dir)}, cfg,
                                     tmp_path / "out")
  assert out["runs"] == {"a": str(run_dir), "b": str(run_dir)}
  assert out["models"]["a"]["replica"] == out["models"]["b"]["replica"] == {
      "replica": 0, "seed": cheater.get_config("tiny").seed, "lam": 0.0}
  saved = json.loads((tmp_path / "out" / "interpret.json").read_text())
  assert set(saved["models"]) == {"a", "b"}
  m = saved["models"]["a"]
  assert len(m["cases"]) == 5
  assert 0 < m["spread"]["test_hard"]["pred"]["entropy_nats_mean"] <= np.log(784)
  rep = m["representation"]
  assert rep["input_swap_null"]["hue_blind"]["changed"] <= 0.1  # Matched intensities.
  layer = rep["layers"]["conv2"]
  for key in ("probe", "invariance", "causal"):
    assert set(layer[f"{key}_null"]) == {"random", "hue_blind"}
  assert len(layer["probe_null"]["random"]["color"]["values"]) == cfg.representation.null_inits
  assert len(layer["invariance"]["classes"]) == 16
  assert 0.0 <= layer["causal"]["max_channel"] <= 1.0
  assert rep["stimuli"]["intensity_gap_mean"] == 0.0
  assert "test_hard/pred" in saved["spread_vs_first"]["b-a"]
  assert "gradcam" in m["sanity"]["randomization"]
  # Same run under two names: the same numbers.
  assert out["models"]["a"]["spread"] == out["models"]["b"]["spread"]
  figs = {p.name for p in (tmp_path / "out" / "figures").iterdir()}
  assert {"gradcam_cases.png", "representation.png", "invariance_channels.png",
          "featviz_a_conv0.png", "topk_b_conv2.png", "sanity_a.png"} <= figs
  assert out["models"]["a"]["representation"] == out["models"]["b"]["representation"]
  # Every seed's measures, the first seed's also the model's own entry.
  seeds = saved["models"]["a"]["seeds"]
  assert len(seeds) == 2 and len(saved["models"]["b"]["seeds"]) == 1
  for entry in seeds:
    assert entry["replica"] == m["replica"]
    for key in ("cases", "spread", "representation"):
      assert entry[key] == m[key], key
