"""Models by name: get_model('cheater') -> a Flax module; apply({'params': p}, x) -> logits."""

import functools

import jax

from ccmnist.models.cnn import MLP
from ccmnist.models.cnn import CheaterCNN
from ccmnist.models.cnn import LfFMLP
from ccmnist.models.cnn import ShapeCNN
from ccmnist.models.cnn import dummy_input

MODELS = {"cheater": CheaterCNN, "shape_cnn": ShapeCNN, "mlp": MLP, "lff_mlp": LfFMLP}


def get_model(name: str, **kwargs):
  """The Flax module called `name` (one of MODELS), built with `kwargs`."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; known models: {', '.join(sorted(MODELS))}.")
  return MODELS[name](**kwargs)


@functools.lru_cache(maxsize=32)
def _jitted_init(model):
  # One compile per model (modules hash by their fields): XLA:CPU takes seconds to compile the
  # threefry draws of an init, and eager init pays that op by op.
  return jax.jit(lambda key: model.init(key, dummy_input())["params"])


def init_params(model, key):
  """The model's params (without the zero 'perturbations' collection)."""
  return _jitted_init(model)(key)


def layer_shapes(model, params) -> dict:
  """{name: shape} of every exposed activation, for one image."""
  _, state = model.apply({"params": params}, dummy_input(), mutable=["intermediates"])
  return {k: v[0].shape for k, v in state["intermediates"].items()}


def param_count(params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))


__all__ = ["CheaterCNN", "ShapeCNN", "MLP", "LfFMLP", "MODELS", "get_model", "init_params",
           "layer_shapes", "param_count"]
