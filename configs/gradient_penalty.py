"""Task 4a of the study: CE + lam * mean((d logit_y / d x)^2), the gradient w.r.t. [0, 1] inputs.

Variants (common.parse_arg): a setting, 'study' (default) or 'fit', and a size.

'study': the study's settings (None / 'full'): CheaterCNN, lam 0.1, data without Gaussian noise
(the study's "Processed_Fg_wo_gn": noise_sigma 0), plain SGD lr 1e-3, batch 64, 4 epochs on 60k
images. 'quick' (a few minutes on a 2-core CPU) differs from the study in: 20k training / 5k test
images, 2 epochs, and SGD lr 1e-2 instead of 1e-3 (plain SGD at 1e-3 does not leave its initial
plateau in a few hundred steps; the 10x rate keeps lr x steps in the same range as the study's
run). 'tiny': synthetic data, for tests.

'fit': the study's formula, data and epochs, trained so that the penalty can be tested. Two
things differ from 'study':
- the optimizer: Adam lr 1e-3 (as configs/erm_adam.py) in every size, instead of plain SGD. At
  the study's SGD and budget the lam = 0 control does not always leave its initial plateau, and
  a method cannot be judged against a control that did not fit the training set; Adam's step
  does not grow with the loss's scale, so the large lam below train at the same rate.
- the lam grid FIT_GRID, up to lam where lam * penalty is comparable to the cross-entropy: the
  penalty is a mean over all N*H*W*C entries of the squared input gradient, small next to the
  cross-entropy, so the study's lam 0.1 leaves training close to plain ERM (the training run
  records lam * penalty / CE per lam in results.json: penalty_ratio). lam stays 0.1, the
  study's, for the headline numbers.

  python -m launch.train --config=configs/gradient_penalty.py --workdir=/tmp/ccmnist/gp
  python -m launch.train --config=configs/gradient_penalty.py:quick --workdir=/tmp/ccmnist/gp_quick
  python -m launch.train --config=configs/gradient_penalty.py:fit,quick --workdir=/tmp/ccmnist/gpf
  python -m launch.evaluate --workdir=/tmp/ccmnist/gp
"""

from configs import common

SETTINGS = ("study", "fit")
FIT_GRID = (0.0, 0.1, 10.0, 1000.0, 10000.0)


def base(arg=None, *, loss_name="gradient_penalty"):
  """The unlocked config shared with color_gradient_penalty.py (the study's settings)."""
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
  variant = common.parse_arg(arg, setting=SETTINGS)
  c = base(variant.size)
  if variant.setting == "fit":
    c.optim.update(dict(name="adam", lr=1e-3, momentum=0.0))
    c.loss.lam_grid = FIT_GRID
  c.lock()
  return c
