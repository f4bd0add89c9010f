"""TensorBoard summaries beside metrics.jsonl: `tensorboard --logdir DIR` shows every replica.

DIR/tensorboard/replica_<r>/ holds one event file series per replica, so TensorBoard draws each
replica (seed x grid point) as its own run; the scalars are those of metrics.jsonl's epoch rows:
train/<metric> (means over the epoch's steps), accuracy/<split>, and speed/train_img_per_s.
loss_terms reads the two terms of a method's objective off such a row for results.json.
"""

import contextlib
import pathlib

import tensorboardX


def scalars(row: dict, replica: int) -> dict:
  """{tag: value} of one metrics.jsonl row for one replica."""
  out = {f"train/{k[len('train_'):]}": v[replica] for k, v in row.items()
         if k.startswith("train_") and isinstance(v, list)}
  out.update({f"accuracy/{split}": v[replica] for split, v in row["accuracy"].items()})
  out["speed/train_img_per_s"] = row["train_img_per_s"]
  return out


def loss_terms(row: dict, lams) -> list | None:
  """Per replica, the two terms of the training objective in one metrics.jsonl row (means over
  the epoch's steps): {'train_ce', 'train_penalty', 'penalty_ratio'}, the ratio being
  lam x penalty / ce, the weight the method's term carries beside the cross-entropy (0 at
  lam 0; None at a zero ce). lams: each replica's lambda. None when the row lacks the terms."""
  if "train_ce" not in row or "train_penalty" not in row:
    return None
  out = []
  for ce, penalty, lam in zip(row["train_ce"], row["train_penalty"], lams, strict=True):
    ce, penalty, lam = float(ce), float(penalty), float(lam)
    ratio = 0.0 if lam == 0 else (lam * penalty / ce if ce > 0 else None)
    out.append({"train_ce": ce, "train_penalty": penalty, "penalty_ratio": ratio})
  return out


@contextlib.contextmanager
def writers(workdir, num_replicas: int):
  """One tensorboardX writer per replica, flushed and closed on exit."""
  root = pathlib.Path(workdir) / "tensorboard"
  out = [tensorboardX.SummaryWriter(str(root / f"replica_{r}"), flush_secs=30)
         for r in range(num_replicas)]
  try:
    yield out
  finally:
    for w in out:
      w.close()


def write_row(tb_writers: list, row: dict) -> None:
  """Every replica's scalars of one epoch row, at the row's optimizer step."""
  for r, w in enumerate(tb_writers):
    for tag, value in scalars(row, r).items():
      w.add_scalar(tag, float(value), global_step=row["step"])
