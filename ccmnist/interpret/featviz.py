"""Feature visualization by activation maximization, every channel of a layer in one program.

The study's setting (the defaults here): an image initialized with Gaussian(0, 0.1) noise,
optimized with Adam (lr 0.1) for 500 steps to maximize the mean over space of one channel of a
conv output (before its ReLU: the study hooks the Conv2d modules themselves), minus an L2
penalty 0.01 * mean(img^2); no clipping, no transforms.

Image scale. The study optimized the image in its model's input space, [0, 1]. Our models take
pixel values in [0, 255] and divide by 255 themselves, so the image is parametrized in [0, 1]
units (init noise, penalty and learning rate act on that scale, exactly as in the study) and
multiplied by 255 when the model is called. Returned images are in [0, 1] units. The study did
not clip, so its images leave [0, 1] and show as flat saturated fields once clipped for display;
`project=True` (projected gradient ascent: the pixels clipped to [0, 1] at the start and after
every step) keeps every image a valid one, [0, 255] in pixel units, by construction. The
Fourier parametrization's sigmoid already does.

Options in the style of Lucid / Lucent, all off by default: random jitter (integer pixel shifts
of up to `jitter` pixels, by jnp.roll), random scaling (a factor drawn from `scales`, about the
image center), and a Fourier parametrization (`param='fourier'`: an RGB spectrum scaled by 1/f,
decorrelated colors, sigmoid output, so images stay in (0, 1)).

All channels of a layer are optimized at once: the per-channel objective is vmapped over the
channel index and the steps run in one lax.scan, so a layer is one compiled program. Adam is
elementwise, so one Adam state over the stacked images equals one optimizer per channel.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ccmnist.interpret import gradcam as gradcam_lib

PARAMS = ("pixel", "fourier")

# Lucid's color decorrelation (square root of the ImageNet RGB covariance). Colored MNIST has
# different color statistics; this is the customary choice, used only with param='fourier'.
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_MEAN = np.asarray([0.48, 0.46, 0.41], np.float32)


def _color_matrix():
  m = COLOR_CORRELATION_SVD_SQRT
  return m / np.max(np.linalg.norm(m, axis=0))


def fft_freqs(h: int, w: int) -> np.ndarray:
  """|frequency| of each rfft2 coefficient of an h x w image, float32[h, w // 2 + 1]."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  return np.sqrt(fx * fx + fy * fy).astype(np.float32)


def _fourier_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
  f = np.maximum(fft_freqs(h, w), 1.0 / max(h, w))
  return (1.0 / f ** decay_power * np.sqrt(h * w)).astype(np.float32)


def init_param(key, *, param: str, init_std: float, hw: tuple):
  """One image's parameters, hw = (H, W) the data's: pixel [H, W, 3] ~ N(0, init_std) (the
  study), or a spectrum [2, 3, H, W // 2 + 1] (real, imaginary) ~ N(0, 0.01) as Lucid
  initializes it."""
  h, w = hw
  if param == "pixel":
    return init_std * jax.random.normal(key, (h, w, 3), jnp.float32)
  if param == "fourier":
    return 0.01 * jax.random.normal(key, (2, 3, h, w // 2 + 1), jnp.float32)
  raise ValueError(f"Unknown parametrization {param!r}; use one of {PARAMS}.")


def to_image(p, *, param: str, hw: tuple):
  """The image in [0, 1] units, [H, W, 3] with hw = (H, W), of one image's parameters."""
  if param == "pixel":
    return p
  spectrum = (p[0] + 1j * p[1]) * _fourier_scale(*hw)
  img = jnp.fft.irfft2(spectrum, s=hw) / 4.0  # [3, H, W]; Lucid's /4.
  img = jnp.transpose(img, (1, 2, 0)) @ jnp.asarray(_color_matrix()).T
  return jax.nn.sigmoid(img + jnp.asarray(COLOR_MEAN))


def _shift(img, key, jitter: int):
  dy, dx = jax.random.randint(key, (2,), -jitter, jitter + 1)
  return jnp.roll(img, (dy, dx), axis=(0, 1))


def _rescale(img, key, scales: tuple):
  s = jnp.asarray(scales, jnp.float32)[jax.random.randint(key, (), 0, len(scales))]
  center = jnp.asarray(img.shape[:2], jnp.float32) / 2.0
  t = center - s * center
  return jax.image.scale_and_translate(
      img, img.shape, (0, 1), jnp.stack([s, s]), t, method="linear")


def channel_activation(model, params, img_HWC, channel, *, layer: str):
  """Mean over space of `channel` of `layer`'s output for one image in [0, 1] units."""
  x = 255.0 * img_HWC[None]  # The model takes pixel units.
  _, state = model.apply({"params": params}, x, mutable=["intermediates"])
  return state["intermediates"][layer][0][0, ..., channel].mean()


@functools.partial(jax.jit, static_argnames=(
    "model", "layer", "num_channels", "steps", "lr", "l2", "init_std", "jitter", "scales",
    "param", "record_every", "project", "hw"))
def _visualize(model, params, key, *, layer, num_channels, steps, lr, l2, init_std, jitter,
               scales, param, record_every, project, hw):
  channels = jnp.arange(num_channels)
  k_init, k_steps = jax.random.split(key)
  # Projection onto the valid images (pixel parametrization only: Fourier is in (0, 1)).
  proj = (lambda q: jnp.clip(q, 0.0, 1.0)) if project and param == "pixel" else (lambda q: q)
  p0 = proj(jax.vmap(lambda k: init_param(k, param=param, init_std=init_std, hw=hw))(
      jax.random.split(k_init, num_channels)))
  tx = optax.adam(lr)

  def loss(p, c, k):
    img = to_image(p, param=param, hw=hw)
    x = img
    k_shift, k_scale = jax.random.split(k)
    if scales:
      x = _rescale(x, k_scale, scales)
    if jitter:
      x = _shift(x, k_shift, jitter)
    act = channel_activation(model, params, x, c, layer=layer)
    return -act + l2 * jnp.mean(img ** 2), act

  grad_fn = jax.vmap(jax.grad(loss, has_aux=True))

  def step(carry, i):
    p, opt_state = carry
    keys = jax.random.split(jax.random.fold_in(k_steps, i), num_channels)
    g, act = grad_fn(p, channels, keys)
    updates, opt_state = tx.update(g, opt_state, p)
    return (proj(optax.apply_updates(p, updates)), opt_state), act

  (p, _), acts = jax.lax.scan(step, (p0, tx.init(p0)), jnp.arange(steps))
  images = jax.vmap(lambda q: to_image(q, param=param, hw=hw))(p)
  final = jax.vmap(lambda im, c: channel_activation(model, params, im, c, layer=layer))(
      images, channels)
  return images, final, acts[::record_every]


def visualize_layer(model, params, *, layer: str, key, image_shape, steps: int = 500,
                    lr: float = 0.1, l2: float = 0.01, init_std: float = 0.1, jitter: int = 0,
                    scales: tuple = (), param: str = "pixel", record_every: int = 10,
                    project: bool = False) -> dict:
  """Activation maximization of every channel of `layer` at once, on images of image_shape
  (H, W, C), the data's (splits.image_shape).

  Defaults are the study's: pixel parametrization in [0, 1] units, init N(0, 0.1), Adam
  lr 0.1, 500 steps, objective mean activation (pre-ReLU conv output) - 0.01 * mean(img^2),
  jitter 0 (off), scales () (off), no projection (project=True: pixels kept in [0, 1]).
  Returns numpy arrays:
    'images' float32[C, H, W, 3] in [0, 1] units (in [0, 1] with project=True),
    'activation' float32[C]: each channel's mean activation on its final image (no transforms),
    'trace' float32[steps // record_every, C]: the activation during the optimization
      (with transforms, if any).
  """
  shape = gradcam_lib.check_layer(model, layer, image_shape)
  if param not in PARAMS:
    raise ValueError(f"Unknown parametrization {param!r}; use one of {PARAMS}.")
  if steps < 1 or jitter < 0 or record_every < 1:
    raise ValueError("steps and record_every must be >= 1 and jitter >= 0.")
  images, final, trace = _visualize(
      model, params, key, layer=layer, num_channels=int(shape[-1]), steps=int(steps),
      lr=float(lr), l2=float(l2), init_std=float(init_std), jitter=int(jitter),
      scales=tuple(float(s) for s in scales), param=param, record_every=int(record_every),
      project=bool(project), hw=tuple(int(d) for d in image_shape[:2]))
  images, final, trace = jax.device_get((images, final, trace))
  return {"images": np.asarray(images), "activation": np.asarray(final),
          "trace": np.asarray(trace)}

