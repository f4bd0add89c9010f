"""What an entry of config.zoo is, for the report: the method it trains with (a training
or refit method of the registry), what it knows of the bias, its title."""

from ccmnist.train import methods as methods_lib
from ccmnist.zoo import plan


def knows(bench, entry: str) -> str:
  """What an entry is told of the bias (its own `knows`, else its method's)."""
  e = bench.zoo[entry]
  return e.knows or method_of(bench, entry).knows


def told(bench, entry: str) -> str:
  """What an entry is told of the bias, in a few words: 'nothing', 'the bias is color',
  'environments' or 'group labels' (else its whole `knows`)."""
  k = knows(bench, entry)
  for start, short in (("nothing", "nothing"), ("that the bias is color", "the bias is color"),
                       ("environments", "environments")):
    if k.startswith(start):
      return short
  return "group labels" if "group" in k else k


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


# Methods whose papers select their hyper-parameters on group-labelled validation data though
# they train without group labels (JTT: Liu et al. 2021; EIIL: Creager et al. 2021).
SELECT_ON_GROUP_VAL = ("jtt", "eiil")
# Which of an entry's splits a method reads the group (digit x aligned) of: every train example
# (the group-aware losses, and IRM / V-REx, whose environments are split by the aligned flag),
# or every val_balanced example (DFR refits on it).
GROUP_LABELS_READ = {"groupdro": "train", "reweight": "train", "balanced_sampling": "train",
                     "irm": "train", "vrex": "train", "dfr": "val_balanced"}
# The selection rules (select.SELECTIONS) and the split each one reads.
RULE_SPLIT = {"val": "val", "group_val": "val_unbiased", "oracle": "test_easy"}


def uses_group_labels(bench, entry: str) -> bool:
  """Whether an entry's training reads group labels: its `knows` names the group."""
  return "the group" in knows(bench, entry)


def headline_rule(bench, entry: str) -> str:
  """The selection rule that matches what an entry may know: 'group_val' for a method trained
  with group labels and for JTT and EIIL (whose papers select on group-labelled val), 'val'
  for the others (no group labels anywhere)."""
  if uses_group_labels(bench, entry) or bench.zoo[entry].loss in SELECT_ON_GROUP_VAL:
    return "group_val"
  return "val"


def stops_early(bench, entry: str) -> bool:
  """Whether an entry's seeds are read at the epoch their selection picks (select.py): its row's
  method is named in config.stop_early (by default those whose paper stops early,
  methods.Benchmark.stop_early)."""
  row = bench.zoo[entry].family or entry
  return row in plan.split_names(bench.get("stop_early", ""))


def group_labels_seen(bench, protocol: str, entry: str, rule: str | None = None) -> int:
  """How many group-labelled examples an entry's result rests on in `protocol`: the split its
  method reads groups of (GROUP_LABELS_READ) plus, under the group_val rule (default: the
  entry's headline_rule), the val_unbiased examples it is selected on."""
  data = bench.protocols[protocol].data
  rule = headline_rule(bench, entry) if rule is None else rule
  read = GROUP_LABELS_READ.get(bench.zoo[entry].loss)
  seen = {"train": data.train_size, "val_balanced": data.val_balanced_size, None: 0}[read]
  if rule == "group_val":
    seen += data.val_unbiased_size
  return int(seen)
