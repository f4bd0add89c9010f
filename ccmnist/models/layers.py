"""Layers shared by the models: a conv with selectable implementation, named activations."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ("phase_dx", "lax", "patches")
_DIMS = ("NHWC", "HWIO", "NHWC")

# PyTorch's default init (kaiming_uniform(a=sqrt(5))): U(+-1/sqrt(fan_in)) for weights and bias.
# The study trained with it; plain SGD at lr 1e-3 is sensitive to the init scale.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
  bound = 1.0 / fan_in ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                  bound)


def _lax_conv(x_NHWC, kernel_HWIO, stride: int, padding: int):
  return jax.lax.conv_general_dilated(
      x_NHWC, kernel_HWIO, window_strides=(stride, stride),
      padding=((padding, padding), (padding, padding)), dimension_numbers=_DIMS)


def phase_input_grad(dy_NHWC, kernel_HWIO, stride: int, padding: int, x_shape):
  """d conv(x, k) / dx applied to dy, as one stride-1 conv and a depth-to-space.

  Input row s*u + a (of the padded input) receives dy[u - m] * k[s*m + a] summed over m, for
  each phase a < s: a stride-1 correlation of dy with the flipped sub-kernel k[a::s]. All s*s
  phases go into one conv with s*s*C output channels. XLA's own input gradient of a strided
  conv (an input-dilated conv) runs 2-5x slower on XLA:CPU, and PGD, the gradient penalty and
  every attribution method are made of it.
  """
  n, h, w, c = x_shape
  s, k, o = stride, kernel_HWIO.shape[0], kernel_HWIO.shape[3]
  m = -(-k // s)  # Taps of the longest sub-kernel.
  kern = jnp.zeros((m, m, o, s, s, c), kernel_HWIO.dtype)
  for a in range(s):
    for b in range(s):
      sub = jnp.flip(kernel_HWIO[a::s, b::s], (0, 1)).transpose(0, 1, 3, 2)  # [ma, mb, O, C]
      kern = kern.at[m - sub.shape[0]:, m - sub.shape[1]:, :, a, b, :].set(sub)
  kern = kern.reshape(m, m, o, s * s * c)
  u, v = -(-(h + 2 * padding) // s), -(-(w + 2 * padding) // s)
  oh, ow = dy_NHWC.shape[1:3]
  out = jax.lax.conv_general_dilated(
      dy_NHWC, kern, (1, 1), ((m - 1, u - oh), (m - 1, v - ow)), dimension_numbers=_DIMS)
  out = out.reshape(n, u, v, s, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, u * s, v * s, c)
  return out[:, padding:padding + h, padding:padding + w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _phase_dx_conv(x_NHWC, kernel_HWIO, stride: int, padding: int):
  return _lax_conv(x_NHWC, kernel_HWIO, stride, padding)


def _phase_dx_fwd(x_NHWC, kernel_HWIO, stride, padding):
  return _lax_conv(x_NHWC, kernel_HWIO, stride, padding), (x_NHWC, kernel_HWIO)


def _phase_dx_bwd(stride, padding, residuals, dy):
  x, kernel = residuals
  _, kernel_vjp = jax.vjp(lambda k: _lax_conv(x, k, stride, padding), kernel)
  return phase_input_grad(dy, kernel, stride, padding, x.shape), kernel_vjp(dy)[0]


_phase_dx_conv.defvjp(_phase_dx_fwd, _phase_dx_bwd)


def conv2d(x_NHWC, kernel_HWIO, bias, *, stride: int, padding: int, impl: str = "phase_dx"):
  """2-D convolution with explicit symmetric padding, as torch.nn.Conv2d computes it.

  impl='lax': lax.conv_general_dilated and XLA's gradients. 'phase_dx' (the default): the same
  forward, with the input gradient of strided convs from `phase_input_grad` (the fastest on
  XLA:CPU; differentiable again, for the gradient penalty). 'patches': kernel windows by strided
  slices and one matmul. All give the same numbers (a test compares outputs and gradients).
  """
  if impl == "lax" or (impl == "phase_dx" and stride == 1):
    y = _lax_conv(x_NHWC, kernel_HWIO, stride, padding)
  elif impl == "phase_dx":
    y = _phase_dx_conv(x_NHWC, kernel_HWIO, stride, padding)
  elif impl == "patches":
    kh, kw, cin, cout = kernel_HWIO.shape
    xp = jnp.pad(x_NHWC, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    windows = [
        xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
        for i in range(kh) for j in range(kw)
    ]
    patches = jnp.concatenate(windows, axis=-1)  # [N, ho, wo, kh*kw*cin], (i, j, c) order.
    y = patches @ kernel_HWIO.reshape(kh * kw * cin, cout)
  else:
    raise ValueError(f"Unknown conv impl {impl!r}; known: {', '.join(CONV_IMPLS)}.")
  return y + bias


class Conv(nn.Module):
  """A conv layer whose params match nn.Conv's ('kernel' HWIO, 'bias'), so they interchange."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  impl: str = "phase_dx"

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    fan_in = k * k * x.shape[-1]
    kernel = self.param("kernel", torch_kernel_init, (k, k, x.shape[-1], self.features))
    bias = self.param("bias", torch_bias_init(fan_in), (self.features,))
    return conv2d(x, kernel, bias, stride=self.stride, padding=self.padding, impl=self.impl)


def TorchDense(features: int, fan_in: int, **kwargs) -> nn.Dense:  # pylint: disable=invalid-name
  """nn.Dense with PyTorch's default init, as the study's nn.Linear had."""
  return nn.Dense(features, kernel_init=torch_kernel_init, bias_init=torch_bias_init(fan_in),
                  **kwargs)


def expose(module: nn.Module, name: str, y):
  """Makes an activation readable (sow) and differentiable (perturb) under `name`."""
  y = module.perturb(name, y)
  module.sow("intermediates", name, y)
  return y
