"""What an entry of config.zoo is, for the report: the method it trains with (a training
or refit method of the registry), what it knows of the bias, its title."""

from ccmnist.train import methods as methods_lib


def knows(bench, entry: str) -> str:
  """What an entry is told of the bias (its own `knows`, else its method's)."""
  e = bench.zoo[entry]
  return e.knows or method_of(bench, entry).knows


def method_of(bench, entry: str):
  """The methods.Method an entry trains (or refits) with."""
  e = bench.zoo[entry]
  try:
    return methods_lib.get(e.loss)
  except ValueError:
    return methods_lib.Method(name=e.loss, loss=None, knows="(method not registered)")


def titles_of(bench) -> dict:
  """{entry: its title} of every entry of config.zoo."""
  return {n: bench.zoo[n].title for n in bench.zoo}
