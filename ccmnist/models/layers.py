"""Layers shared by the models: a conv with selectable implementation, named activations."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ("s2d", "lax", "patches")
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


def _phase_geometry(size: int, kernel_size: int, stride: int, padding: int):
  """Sizes of the phase grid: (taps m of the longest sub-kernel, first and end phase row
  u0, u1 that hold the unpadded input, output size o of the strided conv)."""
  m = -(-kernel_size // stride)
  u0, u1 = padding // stride, -(-(padding + size) // stride)
  o = (size + 2 * padding - kernel_size) // stride + 1
  return m, u0, u1, o


def _phase_kernel(kernel_HWIO, stride: int):
  """[m, m, s*s*C, O]: kernel tap (s*i + a, s*j + b) moved to (i, j) on phase channel (a, b)."""
  k, _, c, o = kernel_HWIO.shape
  s = stride
  m = -(-k // s)
  kp = jnp.pad(kernel_HWIO, ((0, m * s - k), (0, m * s - k), (0, 0), (0, 0)))
  return kp.reshape(m, s, m, s, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(m, m, s * s * c, o)


# Fewest output features a small conv runs with: a conv with fewer (the study's first layer has
# 8) computes q = 16 // features adjacent output columns per position instead, as q * features
# channels. XLA:CPU's conv (Eigen's matrix product over image patches) runs a product this
# narrow slowly, and one twice as wide in less time (docs/perf.md).
_MIN_CONV_FEATURES = 16


def column_phase_conv(x_NHWC, kernel_HWIO, q: int | None = None):
  """The stride-1 VALID conv of x with kernel, computed as a conv of stride (1, q) whose
  q * O output channels are q adjacent output columns: output column q*v + e is
  sum_j kernel[:, j] x[:, q*v + e + j], so column group v reads the kernel shifted right by e
  for its channel group e. Every output is the plain conv's sum of products, plus products
  with the shifted kernel's zero columns.

  q: columns per position; None picks _MIN_CONV_FEATURES // O (1: the plain conv).
  """
  n, h, w, c = x_NHWC.shape
  kh, kw, _, o = kernel_HWIO.shape
  q = max(1, _MIN_CONV_FEATURES // o) if q is None else q
  if q == 1:
    return _lax_conv(x_NHWC, kernel_HWIO, 1, 0)
  oh, ow = h - kh + 1, w - kw + 1
  groups = -(-ow // q)
  # [kh, kw + q - 1, C, q, O]: channel group e holds the kernel shifted right by e columns.
  kq = jnp.stack([jnp.pad(kernel_HWIO, ((0, 0), (e, q - 1 - e), (0, 0), (0, 0)))
                  for e in range(q)], axis=3).reshape(kh, kw + q - 1, c, q * o)
  x = jnp.pad(x_NHWC, ((0, 0), (0, 0), (0, q * groups + kw - 1 - w), (0, 0)))
  y = jax.lax.conv_general_dilated(x, kq, (1, q), "VALID", dimension_numbers=_DIMS)
  return y.reshape(n, oh, groups * q, o)[:, :, :ow]


def space_to_depth_conv(x_NHWC, kernel_HWIO, stride: int, padding: int):
  """A stride-s conv as a stride-1 conv over the s*s phases of the padded input.

  Phase (a, b) of the input holds pixels (s*u + a, s*v + b); the kernel is zero-padded to a
  multiple of s and split the same way, so every output is the same sum of products, in
  another order. XLA:CPU runs it faster than the strided conv when the input has few channels
  (the study's first layer: 3 -> 12 phase channels; docs/perf.md). The stride-1 conv is a
  column_phase_conv, for the few output features.
  """
  n, h, w, c = x_NHWC.shape
  s, k = stride, kernel_HWIO.shape[0]
  m, _, _, oh = _phase_geometry(h, k, s, padding)
  _, _, _, ow = _phase_geometry(w, k, s, padding)
  hp, wp = s * (oh - 1 + m), s * (ow - 1 + m)  # Padded size the phase grid needs.
  xp = jax.lax.pad(x_NHWC, jnp.zeros((), x_NHWC.dtype),
                   ((0, 0, 0), (padding, hp - h - padding, 0), (padding, wp - w - padding, 0),
                    (0, 0, 0)))
  xs = xp.reshape(n, hp // s, s, wp // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  xs = xs.reshape(n, hp // s, wp // s, s * s * c)
  return column_phase_conv(xs, _phase_kernel(kernel_HWIO, s))


def phase_input_grad(dy_NHWC, kernel_HWIO, stride: int, padding: int, x_shape):
  """d conv(x, k) / dx applied to dy, as one stride-1 conv and a depth-to-space.

  Input row s*u + a (of the padded input) receives dy[u - i] * k[s*i + a] summed over i, for
  each phase a < s: a stride-1 correlation of dy with the flipped sub-kernel k[a::s]. All s*s
  phases go into one conv with s*s*C output channels, computed only for the phase rows that
  hold the unpadded input. XLA's own input gradient of a strided conv (an input-dilated conv)
  runs slowly on XLA:CPU, and PGD, the gradient penalty and every attribution method are made
  of it.
  """
  n, h, w, c = x_shape
  s, k = stride, kernel_HWIO.shape[0]
  m, u0, u1, oh = _phase_geometry(h, k, s, padding)
  _, v0, v1, ow = _phase_geometry(w, k, s, padding)
  # Flipped taps, [m, m, O, s*s*C]: the phase kernel read backwards, in and out swapped.
  kern = jnp.flip(_phase_kernel(kernel_HWIO, s), (0, 1)).transpose(0, 1, 3, 2)
  out = jax.lax.conv_general_dilated(
      dy_NHWC, kern, (1, 1), ((m - 1 - u0, u1 - oh), (m - 1 - v0, v1 - ow)),
      dimension_numbers=_DIMS)
  out = out.reshape(n, u1 - u0, v1 - v0, s, s, c).transpose(0, 1, 3, 2, 4, 5)
  out = out.reshape(n, (u1 - u0) * s, (v1 - v0) * s, c)
  top, left = padding - u0 * s, padding - v0 * s
  return out[:, top:top + h, left:left + w]


# Largest input channel count for which the forward pass runs as `space_to_depth_conv`: on
# XLA:CPU the phases help the 3-channel first layer and hurt the 8-channel second one.
_S2D_FORWARD_MAX_CHANNELS = 4


def _strided_conv(x_NHWC, kernel_HWIO, stride: int, padding: int):
  if x_NHWC.shape[-1] <= _S2D_FORWARD_MAX_CHANNELS:
    return space_to_depth_conv(x_NHWC, kernel_HWIO, stride, padding)
  return _lax_conv(x_NHWC, kernel_HWIO, stride, padding)


def _kernel_grad(x_NHWC, dy_NHWC, kernel_shape, stride: int, padding: int):
  """d <conv(x, k), dy> / dk. XLA:CPU's own kernel gradient of the strided conv is its fastest
  form (a library call)."""
  zeros = jnp.zeros(kernel_shape, x_NHWC.dtype)
  _, kernel_vjp = jax.vjp(lambda k: _lax_conv(x_NHWC, k, stride, padding), zeros)
  return kernel_vjp(dy_NHWC)[0]


# The strided conv and its transpose (the input gradient) are each other's derivatives, with the
# same kernel gradient: each rule below calls the other's custom_vjp function, so gradients of
# gradients (the gradient penalty) also run on the fast forms, never on autodiff of them.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _s2d_conv(x_NHWC, kernel_HWIO, stride: int, padding: int):
  return _strided_conv(x_NHWC, kernel_HWIO, stride, padding)


def _s2d_conv_fwd(x_NHWC, kernel_HWIO, stride, padding):
  return _s2d_conv(x_NHWC, kernel_HWIO, stride, padding), (x_NHWC, kernel_HWIO)


def _s2d_conv_bwd(stride, padding, residuals, dy):
  x, kernel = residuals
  return (_s2d_conv_transpose(dy, kernel, stride, padding, x.shape),
          _kernel_grad(x, dy, kernel.shape, stride, padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _s2d_conv_transpose(dy_NHWC, kernel_HWIO, stride: int, padding: int, x_shape):
  return phase_input_grad(dy_NHWC, kernel_HWIO, stride, padding, x_shape)


def _s2d_conv_transpose_fwd(dy_NHWC, kernel_HWIO, stride, padding, x_shape):
  out = _s2d_conv_transpose(dy_NHWC, kernel_HWIO, stride, padding, x_shape)
  return out, (dy_NHWC, kernel_HWIO)


def _s2d_conv_transpose_bwd(stride, padding, x_shape, residuals, dx):
  dy, kernel = residuals
  return (_s2d_conv(dx, kernel, stride, padding),
          _kernel_grad(dx, dy, kernel.shape, stride, padding))


_s2d_conv.defvjp(_s2d_conv_fwd, _s2d_conv_bwd)
_s2d_conv_transpose.defvjp(_s2d_conv_transpose_fwd, _s2d_conv_transpose_bwd)


def conv2d(x_NHWC, kernel_HWIO, bias, *, stride: int, padding: int, impl: str = "s2d"):
  """2-D convolution with explicit symmetric padding, as torch.nn.Conv2d computes it.

  impl='lax': lax.conv_general_dilated and XLA's gradients. 's2d' (the default, the fastest on
  XLA:CPU): strided convs over s*s phases (space to depth): the forward pass where the input
  has few channels (`space_to_depth_conv`) and the input gradient always (`phase_input_grad`;
  for stride 1 a plain conv with the flipped kernel, which XLA:CPU runs much faster than its own
  input gradient inside PGD's loop); differentiable again, for the gradient penalty.
  'patches': kernel windows by strided slices and one matmul. All give the same numbers (a test
  compares outputs and gradients).
  """
  if impl == "lax":
    y = _lax_conv(x_NHWC, kernel_HWIO, stride, padding)
  elif impl == "s2d":
    y = _s2d_conv(x_NHWC, kernel_HWIO, stride, padding)
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
  impl: str = "s2d"

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
