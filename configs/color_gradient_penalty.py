r"""Like gradient_penalty.py, but the penalty sees only the chromatic part of the input gradient.

loss 'color_gradient_penalty': CE + lam * mean((g - mean_over_RGB(g))^2), g = d logit_y / d x
w.r.t. [0, 1] inputs, so the luminance (grey-level shape) direction is left unpenalized. Not in
the study: an extension testing whether 4a failed because it penalized shape gradients too. Same
settings as gradient_penalty.py's 'study' variant (lam 0.1, no noise, SGD lr 1e-3, 4
epochs; 'quick' as there).

  python -m launch.train --config=configs/color_gradient_penalty.py --workdir=/tmp/ccmnist/cgp
  python -m launch.train --config=configs/color_gradient_penalty.py:quick \
      --workdir=/tmp/ccmnist/cgp_quick
"""

from configs import gradient_penalty


def get_config(arg=None):
  c = gradient_penalty.base(arg, loss_name="color_gradient_penalty")
  c.lock()
  return c
