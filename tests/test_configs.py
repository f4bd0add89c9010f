"""configs.common.parse_arg: every config's variant syntax, and its errors."""

import importlib

import pytest

from configs import common

CONFIGS = ("attack", "benchmark", "cheater", "color_gradient_penalty", "counterfactual", "data",
           "erm_adam", "gradient_penalty", "interpret", "study")


def test_parse_arg_defaults_bare_values_and_keys():
  opts = dict(optimizer=("adam", "momentum"))
  assert common.parse_arg(None, **opts).to_dict() == {"size": "full", "optimizer": "adam"}
  assert common.parse_arg("", **opts).to_dict() == {"size": "full", "optimizer": "adam"}
  assert common.parse_arg("momentum,quick", **opts).to_dict() == {
      "size": "quick", "optimizer": "momentum"}
  assert common.parse_arg("size=tiny, optimizer=momentum", **opts).to_dict() == {
      "size": "tiny", "optimizer": "momentum"}


@pytest.mark.parametrize("arg", ["huge", "size=huge", "colour=quick", "momentum_quick", "adam"])
def test_parse_arg_refuses_what_it_does_not_know(arg):
  with pytest.raises(ValueError, match="Unknown config variant") as e:
    common.parse_arg(arg)  # No optimizer field here: 'adam' is unknown too.
  assert "size: full|quick|tiny" in str(e.value)  # The message says what is allowed.


def test_a_bare_value_two_fields_allow_is_ambiguous():
  with pytest.raises(ValueError, match="Unknown config variant 'x'"):
    common.parse_arg("x", a=("x", "y"), b=("z", "x"))
  assert common.parse_arg("b=x", a=("x", "y"), b=("z", "x")).b == "x"


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_takes_the_sizes_and_refuses_others(name):
  module = importlib.import_module(f"configs.{name}")
  for size in (None, "full", "quick", "tiny"):
    assert module.get_config(size).is_locked
  with pytest.raises(ValueError, match="Unknown config variant"):
    module.get_config("huge")
