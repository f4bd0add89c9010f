"""Layers shared by the models: a conv with selectable implementation, named activations."""

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ("lax", "patches")

# PyTorch's default init (kaiming_uniform(a=sqrt(5))): U(+-1/sqrt(fan_in)) for weights and bias.
# The study trained with it; plain SGD at lr 1e-3 is sensitive to the init scale.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
  bound = 1.0 / fan_in ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                  bound)


def conv2d(x_NHWC, kernel_HWIO, bias, *, stride: int, padding: int, impl: str = "lax"):
  """2-D convolution with explicit symmetric padding, as torch.nn.Conv2d computes it.

  impl='lax' calls lax.conv_general_dilated; impl='patches' gathers the kernel windows with
  strided slices and does one matmul, which XLA:CPU runs much faster for the study's large
  kernels. Both give the same numbers (a test compares outputs and gradients).
  """
  if impl == "lax":
    y = jax.lax.conv_general_dilated(
        x_NHWC, kernel_HWIO, window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
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
  impl: str = "lax"

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
