"""The training config's skeleton, built in one place (configs/common.py, layout.py and
zoo/plan.py make theirs here).

  seed, num_seeds   replicas trained in one program (vmap); seeds seed .. seed+num_seeds-1
  data              the data config (configs/common.py's data_config)
  model             name, conv_impl ('s2d', fastest on XLA:CPU, 'lax' or 'patches'; same numbers:
                    ccmnist/models/layers.py)
  loss              name (a method of ccmnist/train/methods), lam, lam_grid, warmup_epochs,
                    grad_scale, settings (the method's own; empty: its defaults)
  optim             name, lr, momentum, weight_decay, schedule, warmup_steps (train/optim.py);
                    lr_grid, a field only an lr-grid run adds (train/replicas.py)
  train             epochs, batch_size, eval_batch_size, log_every_steps, data_parallel,
                    eval_train_every_epoch (train/loop.py); eval_every_epochs and grad_norm,
                    fields only the benchmark's runs carry (absent: 1, runs.eval_every_epochs;
                    True, the step's metrics hold the gradient norm: train/step.py)
"""

import ml_collections

MODEL_DEFAULTS = {"conv_impl": "s2d"}
LOSS_DEFAULTS = {"name": "erm", "lam": 0.0, "lam_grid": (), "warmup_epochs": 0,
                 "grad_scale": "unit", "settings": {}}


def training_config(*, seed: int, num_seeds: int, data, model, optim, train, loss=None,
                    lock: bool = True) -> ml_collections.ConfigDict:
  """A training config from its parts (dicts or ConfigDicts, copied): model and loss fields
  not given take MODEL_DEFAULTS and LOSS_DEFAULTS. Locked unless lock=False."""
  as_dict = lambda part: part.to_dict() if isinstance(part, ml_collections.ConfigDict) else dict(
      part)
  loss = {**LOSS_DEFAULTS, **as_dict(loss or {})}
  loss["settings"] = ml_collections.ConfigDict(as_dict(loss["settings"]))
  c = ml_collections.ConfigDict()
  c.seed = seed
  c.num_seeds = num_seeds
  c.data = ml_collections.ConfigDict(as_dict(data))
  c.model = ml_collections.ConfigDict({**MODEL_DEFAULTS, **as_dict(model)})
  c.loss = ml_collections.ConfigDict(loss)
  c.optim = ml_collections.ConfigDict(as_dict(optim))
  c.train = ml_collections.ConfigDict(as_dict(train))
  if lock:
    c.lock()
  return c
