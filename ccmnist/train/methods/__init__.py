"""Training methods by name: METHODS[config.loss.name] -> base.Method, in the benchmark's order.

Adding one: a module with a pure loss and its Method (base.py says what the step gives it, and
how its benchmark entry is declared), and one line below. tests/test_methods_registered.py
trains every registered method; configs/zoo.py makes the benchmark's entries from this table.
"""

from ccmnist.train.methods import base
from ccmnist.train.methods import cf_augment
from ccmnist.train.methods import consistency
from ccmnist.train.methods import dfr
from ccmnist.train.methods import eiil
from ccmnist.train.methods import erm
from ccmnist.train.methods import gradient_penalty
from ccmnist.train.methods import groupdro
from ccmnist.train.methods import irm
from ccmnist.train.methods import jtt
from ccmnist.train.methods import lff
from ccmnist.train.methods import noise
from ccmnist.train.methods import recolor
from ccmnist.train.methods import reweight
from ccmnist.train.methods import vrex

Method = base.Method

METHODS = {m.name: m for m in (
    erm.METHOD,
    gradient_penalty.METHOD,
    gradient_penalty.COLOR_METHOD,
    consistency.METHOD,
    groupdro.METHOD,
    reweight.METHOD,
    reweight.SAMPLING_METHOD,
    dfr.METHOD,
    irm.METHOD,
    vrex.METHOD,
    jtt.METHOD,
    lff.METHOD,
    eiil.METHOD,
    recolor.METHOD,
    cf_augment.METHOD,
    noise.METHOD,
)}


def get(name: str) -> base.Method:
  if name not in METHODS:
    raise ValueError(f"Unknown loss {name!r}; known losses: {', '.join(METHODS)}.")
  return METHODS[name]


def settings_of(config) -> dict:
  """The method's settings: its defaults, overridden by config.loss.settings; and the run's
  grad_scale and data config (`data`), which a loss cannot otherwise see."""
  method = get(config.loss.name)
  given = dict(config.loss.get("settings", None) or {})
  unknown = sorted(set(given) - set(method.defaults))
  if unknown:
    known = ", ".join(sorted(method.defaults)) or "none"
    raise ValueError(f"config.loss.settings.{unknown[0]} is not a setting of {method.name!r} "
                     f"(its settings: {known}).")
  return {"grad_scale": config.loss.grad_scale, **method.defaults, **given, "data": config.data}


__all__ = ["METHODS", "Method", "get", "settings_of"]
