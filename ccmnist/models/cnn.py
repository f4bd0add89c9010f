"""The study's CheaterCNN and the comparison models.

All take NHWC images in pixel units [0, 255] and divide by 255 themselves. Their class count
(num_classes) and the image shape they are initialized with come from the data (data/splits.py
spec): nothing here assumes MNIST's. Every conv output
(before its ReLU) is exposed by name, conv0, conv1, ..., through `sow('intermediates')` and
`perturb`, so Grad-CAM, feature visualization and selectivity read it without model changes.
"""

import flax.linen as nn
import jax.numpy as jnp

from ccmnist.models.layers import Conv
from ccmnist.models.layers import TorchDense
from ccmnist.models.layers import expose


class CheaterCNN(nn.Module):
  """The study's shortcut-prone CNN, exactly: large kernels, stride 2, no pooling.

  conv 3->8 k9 s2 p4, ReLU; conv 8->16 k5 s2 p2, ReLU; conv 16->16 k3 s1 p1, ReLU;
  flatten (7*7*16 = 784 on 28x28 MNIST); dense 784->num_classes (15,338 parameters for 10).
  """
  num_classes: int
  conv_impl: str = "s2d"

  @nn.compact
  def __call__(self, x_NHWC):
    x = x_NHWC / 255.0
    for i, (features, k, s, p) in enumerate(((8, 9, 2, 4), (16, 5, 2, 2), (16, 3, 1, 1))):
      x = Conv(features, k, s, p, impl=self.conv_impl, name=f"Conv_{i}")(x)
      x = nn.relu(expose(self, f"conv{i}", x))
    x = x.reshape(x.shape[0], -1)
    return TorchDense(self.num_classes, x.shape[-1], name="Dense_0")(x)


class ShapeCNN(nn.Module):
  """What a practitioner picks by default for MNIST: 3x3 kernels and max pooling."""
  num_classes: int
  conv_impl: str = "s2d"
  width: int = 32

  @nn.compact
  def __call__(self, x_NHWC):
    x = x_NHWC / 255.0
    for i, features in enumerate((self.width, self.width, 2 * self.width, 2 * self.width)):
      x = Conv(features, 3, 1, 1, impl=self.conv_impl, name=f"Conv_{i}")(x)
      x = nn.relu(expose(self, f"conv{i}", x))
      if i % 2 == 1:
        x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


class MLP(nn.Module):
  """A two-hidden-layer perceptron on the flattened RGB image."""
  # On XLA:CPU, replicas batched and the whole batch in one pass (train/step.py, docs/perf.md).
  cpu_replica_map = "vmap"
  cpu_pass_images = 0
  num_classes: int
  hidden: tuple = (256, 256)
  conv_impl: str = "s2d"  # Unused; accepted so every model takes the same keywords.

  @nn.compact
  def __call__(self, x_NHWC):
    x = (x_NHWC / 255.0).reshape(x_NHWC.shape[0], -1)
    for i, h in enumerate(self.hidden):
      x = nn.relu(expose(self, f"dense{i}", nn.Dense(h)(x)))
    return nn.Dense(self.num_classes)(x)


class LfFMLP(nn.Module):
  """The MLP of LfF and DFA's Colored MNIST: 3 hidden layers of 100, ReLU, a linear head.

  As alinlab/LfF module/mlp.py (commit e66796e): Linear(2352, 100), ReLU, Linear(100, 100),
  ReLU, Linear(100, 100), ReLU, Linear(100, 10), PyTorch's default init (TorchDense), no
  dropout or normalization. Their input is ToTensor's [0, 1] divided by 255 once more in the
  model, so the network sees pixels / 255**2: pixel_scale keeps that (set 1 / 255 for [0, 1]).
  DFA (kakaoenterprise/Learning-Debiased-Disentangled) narrows the last hidden layer to 16:
  hidden=(100, 100, 16). Each hidden pre-activation is exposed as dense0, dense1, ...
  """
  cpu_replica_map = "vmap"  # As MLP's.
  # But the input-gradient penalty's double backprop runs faster one replica at a time here
  # (not in the study's MLP, whose batched step stays faster): docs/perf.md.
  cpu_replica_map_by_method = (("gradient_penalty", "scan"),)
  cpu_pass_images = 0
  num_classes: int
  hidden: tuple = (100, 100, 100)
  pixel_scale: float = 1.0 / (255.0 * 255.0)
  conv_impl: str = "s2d"  # Unused; accepted so every model takes the same keywords.

  @nn.compact
  def __call__(self, x_NHWC):
    x = (x_NHWC * self.pixel_scale).reshape(x_NHWC.shape[0], -1)
    for i, h in enumerate(self.hidden):
      x = nn.relu(expose(self, f"dense{i}", TorchDense(h, x.shape[-1], name=f"Dense_{i}")(x)))
    return TorchDense(self.num_classes, x.shape[-1], name=f"Dense_{len(self.hidden)}")(x)


def dummy_input(image_shape, batch: int = 1):
  """Zeros float32[batch, *image_shape]: what a model is initialized and traced with."""
  return jnp.zeros((batch, *image_shape), jnp.float32)
