"""What an entry of config.zoo is, for the report: the method it trains with (a training
method, or KIND_METHODS' for an entry that is not one), what it knows of the bias, its title."""

from ccmnist.train import methods as methods_lib


# Entries that are not a training method (config.zoo.<entry>.kind), described as one.
KIND_METHODS = {"dfr": methods_lib.Method(
    name="dfr", loss=None,
    summary="the needed run's last layer refit on a group-balanced subset of val_balanced",
    paper="Kirichenko et al. 2022, 'Last Layer Re-Training is Sufficient for Robustness to "
          "Spurious Correlations'",
    knows="the group (digit x color aligned or not) of every held-out val_balanced example",
    lam_means="L2 strength per example of the head's refit")}


def knows(bench, entry: str) -> str:
  """What an entry is told of the bias (its own `knows`, else its method's)."""
  e = bench.zoo[entry]
  return e.knows or method_of(bench, entry).knows


def method_of(bench, entry: str):
  """The methods.Method an entry trains with (KIND_METHODS' for refits)."""
  e = bench.zoo[entry]
  if e.kind in KIND_METHODS:
    return KIND_METHODS[e.kind]
  try:
    return methods_lib.get(e.loss)
  except ValueError:
    return methods_lib.Method(name=e.loss, loss=None, knows="(method not registered)")


def titles_of(bench) -> dict:
  """{entry: its title} of every entry of config.zoo."""
  return {n: bench.zoo[n].title for n in bench.zoo}
