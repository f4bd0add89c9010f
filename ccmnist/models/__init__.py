"""Models by name, built from the data: get_model('cheater', num_classes=spec.num_classes) -> a Flax
module; init_params(model, key, spec.image_shape); apply({'params': p}, x) -> logits (spec: the
data config's splits.spec)."""

import functools
import operator

import jax

from ccmnist.models.cnn import MLP
from ccmnist.models.cnn import CheaterCNN
from ccmnist.models.cnn import LfFMLP
from ccmnist.models.cnn import ShapeCNN
from ccmnist.models.cnn import dummy_input

MODELS = {"cheater": CheaterCNN, "shape_cnn": ShapeCNN, "mlp": MLP, "lff_mlp": LfFMLP}


def get_model(name: str, *, num_classes: int, **kwargs):
  """The Flax module called `name` (one of MODELS) with num_classes outputs (the data's:
  splits.spec(cfg).num_classes), built with `kwargs`."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; known models: {', '.join(sorted(MODELS))}.")
  return MODELS[name](num_classes=num_classes, **kwargs)


def check_image_shape(image_shape) -> tuple:
  """image_shape as an (H, W, C) int tuple, or a ValueError saying what it should be."""
  try:
    shape = tuple(operator.index(d) for d in image_shape)
  except TypeError:
    shape = ()
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f"image_shape must be one image's (H, W, C) (splits.spec(cfg).image_shape); "
                     f"got {image_shape!r}.")
  return shape


@functools.lru_cache(maxsize=32)
def _jitted_init(model, image_shape):
  # One compile per model and shape (modules hash by their fields): XLA:CPU takes seconds to
  # compile the threefry draws of an init, and eager init pays that op by op.
  return jax.jit(lambda key: model.init(key, dummy_input(image_shape))["params"])


def init_params(model, key, image_shape):
  """The model's params for images of image_shape (H, W, C), the data's (splits.spec(cfg)
  .image_shape or splits.image_shape(split)), without the zero 'perturbations' collection."""
  return _jitted_init(model, check_image_shape(image_shape))(key)


def layer_shapes(model, params, image_shape) -> dict:
  """{name: shape} of every exposed activation, for one image of image_shape (H, W, C)."""
  _, state = model.apply({"params": params}, dummy_input(check_image_shape(image_shape)),
                         mutable=["intermediates"])
  return {k: v[0].shape for k, v in state["intermediates"].items()}


def param_count(params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))


__all__ = ["CheaterCNN", "ShapeCNN", "MLP", "LfFMLP", "MODELS", "get_model", "init_params",
           "layer_shapes", "param_count", "dummy_input", "check_image_shape"]
