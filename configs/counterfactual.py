r"""Task 4b of the study: counterfactual consistency, CE + lam * mean((f(x) - f(x_cf))^2).

x_cf is the same grey digit in another random color (fresh background and noise); f = logits.
Study settings (None / 'full'): CheaterCNN, lam 0.5, CE only for the first 2 epochs (warmup),
10 epochs, batch 64, data with the study's noise (sigma 0.02). The study names no optimizer for
this run; the one it names (the cheater's) is plain SGD lr 1e-3, used here.
'quick' differs from the study in: 20k training / 5k test images, 4 epochs with 1 warmup epoch,
and SGD lr 1e-2 (see gradient_penalty.py for why). 'tiny': synthetic data, for tests.

With plain SGD at lr 1e-3 the model can still be on its initial plateau when the consistency
term switches on; the study config trains this run with Adam (`--config.optim.name=adam`) and
reports an Adam-only ERM control beside it (results: docs/results/).

  python -m launch.train --config=configs/counterfactual.py --workdir=/tmp/ccmnist/cf
  python -m launch.train --config=configs/counterfactual.py:quick --workdir=/tmp/ccmnist/cf_quick
  python -m launch.train --config=configs/counterfactual.py --config.optim.name=adam \
      --workdir=/tmp/ccmnist/cf_adam
  python -m launch.evaluate --workdir=/tmp/ccmnist/cf
"""

from configs import common


def get_config(arg=None):
  size = common.parse_arg(arg).size
  c = common.train_config(size)
  c.loss.name = "consistency"
  c.loss.lam = 0.5
  c.loss.warmup_epochs = 2
  if size == "quick":
    c.train.epochs = 4
    c.loss.warmup_epochs = 1
  elif size == "tiny":
    c.loss.warmup_epochs = 1
  c.lock()
  return c
