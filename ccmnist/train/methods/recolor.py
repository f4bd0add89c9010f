"""Random recoloring: every step, every batch image painted anew in a uniformly random color.

An augmentation baseline (ours), oracle-ish: it knows that the bias is color, and how the data
colors a digit. Each step each batch row's grey digit (the train split's `grey`) is recolored
with coloring.recolor_fn(config.data), the split's own coloring (background, noise, jitter), in
a color drawn uniformly from the palette's 10, independent of the label; loss = the mean CE on
those images, the stored colored images never seen. lam is unused.

Randomness: a per-replica key in extra, from the replica's seed (fold_in(key(seed), 2); the
model's init uses 0 and the data order 1), folded with the step and then with each row's index:
the recoloring of a row at a step does not depend on which rows share its batch or on how the
batch is sliced into passes.

Settings: none of its own; it reads settings['data'], the run's data config, which every
method's settings carry (methods.settings_of).
"""

import jax
import numpy as np

from ccmnist.data import coloring
from ccmnist.data import splits as splits_lib
from ccmnist.train.methods import base

_KEY_STREAM = 2  # fold_in(key(seed), .): 0 the model's init, 1 the data order (train/loop.py).


def init_extra(config, train_split, reps, *, settings, reference) -> dict:
  """key [K, ...]: each replica's recoloring key data, from its seed."""
  del config, train_split, settings, reference
  keys = [jax.random.fold_in(jax.random.key(r["seed"]), _KEY_STREAM) for r in reps]
  return {"key": np.stack([np.asarray(jax.random.key_data(k)) for k in keys])}


def recolor_rows(recolor, grey, index, key, *, num_colors: int):
  """float32 [B, H, W, 3]: each row of grey [B, H, W] recolored by recolor (coloring.recolor_fn)
  in a uniformly random one of the palette's num_colors colors, with its own key
  fold_in(key, index)."""
  def one(g, i):
    k_color, k_paint = jax.random.split(jax.random.fold_in(key, i))
    color = jax.random.randint(k_color, (1,), 0, num_colors)
    return recolor(g[None], color, k_paint)[0]
  return jax.vmap(one)(grey, index)


def loss(*, model, params, batch, lam, extra, step, warmup_steps, settings):
  del lam, warmup_steps
  images = recolor_rows(coloring.recolor_fn(settings["data"]), batch["grey"], batch["index"],
                        base.step_key(extra, step),
                        num_colors=splits_lib.spec(settings["data"]).num_colors)
  return base.ce_on(model, params, images, batch["labels"], extra)


METHOD = base.Method(
    name="random_recolor", loss=loss,
    summary="mean CE on the batch's digits recolored each step in uniformly random colors",
    paper="ours: an augmentation baseline",
    knows="that the bias is color, and how the data colors a digit (oracle-ish)",
    batch_keys=("grey", "labels", "index"), init_extra=init_extra,
    benchmark=base.Benchmark(title="random recoloring"))
