"""Task 4a of the study: CE + lam * mean((d logit_y / d x)^2), the gradient w.r.t. [0, 1] inputs.

Study settings (None / 'full'): CheaterCNN, lam 0.1, data without Gaussian noise (the study's
"Processed_Fg_wo_gn": noise_sigma 0), plain SGD lr 1e-3, batch 64, 4 epochs on 60k images.
'quick' (a few minutes on a 2-core CPU) differs from the study in: 20k training / 5k test
images, 2 epochs, and SGD lr 1e-2 instead of 1e-3 (plain SGD at 1e-3 does not leave its initial
plateau in a few hundred steps; the 10x rate keeps lr x steps in the same range as the study's
run). 'tiny': synthetic data, for tests.

Note: with the study's formula (a mean over all N*H*W*C entries) the penalty is small next to
the cross-entropy, so training at lam 0.1 is close to plain ERM; sweep lam
(`--config.loss.lam_grid='(0.1, 10.0, 1000.0)'`) to see a penalty that bites.

  python -m launch.train --config=configs/gradient_penalty.py --workdir=/tmp/ccmnist/gp
  python -m launch.train --config=configs/gradient_penalty.py:quick --workdir=/tmp/ccmnist/gp_quick
  python -m launch.evaluate --workdir=/tmp/ccmnist/gp
"""

from configs import common


def base(arg=None, *, loss_name="gradient_penalty"):
  """The unlocked config shared with color_gradient_penalty.py."""
  size = common.parse_arg(arg).size
  c = common.train_config(size)
  c.data.noise_sigma = 0.0
  c.loss.name = loss_name
  c.loss.lam = 0.1
  c.loss.grad_scale = "unit"
  if size == "full":
    c.train.epochs = 4
  elif size == "quick":
    c.train.epochs = 2
  return c


def get_config(arg=None):
  c = base(arg)
  c.lock()
  return c
