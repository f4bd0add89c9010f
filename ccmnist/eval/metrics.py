"""Metrics of predictions: pure numpy functions of (preds, labels[, aligned]).

`aligned[i]` says image i wears its own digit's color (bias-aligned); the others are
bias-conflicting. A group with no images has accuracy None (not 0), so json stays honest.
"""

import numpy as np



def _check(preds, labels):
  preds, labels = np.asarray(preds), np.asarray(labels)
  if preds.shape != labels.shape or preds.ndim != 1:
    raise ValueError(f"preds and labels must be 1-D of one length; got {preds.shape} and "
                     f"{labels.shape}.")
  return preds, labels


def accuracy(preds, labels) -> float | None:
  """Fraction of preds equal to labels; None for no examples."""
  preds, labels = _check(preds, labels)
  return float(np.mean(preds == labels)) if labels.size else None


def group_accuracy(preds, labels, aligned) -> dict:
  """{'aligned', 'conflicting'}: accuracy on each group (None where a group is empty)."""
  preds, labels = _check(preds, labels)
  aligned = np.asarray(aligned, bool)
  if aligned.shape != labels.shape:
    raise ValueError(f"aligned must match labels; got {aligned.shape} vs {labels.shape}.")
  return {"aligned": accuracy(preds[aligned], labels[aligned]),
          "conflicting": accuracy(preds[~aligned], labels[~aligned])}


def unbiased_equivalent(aligned_acc, conflicting_acc, *, aligned_share: float) -> float | None:
  """share * aligned + (1 - share) * conflicting: the expected accuracy on uniformly colored
  digits, of which aligned_share are aligned (splits.Spec.aligned_share; the study's: 1 of its
  10 colors)."""
  if aligned_acc is None or conflicting_acc is None:
    return None
  return aligned_share * aligned_acc + (1 - aligned_share) * conflicting_acc


def confusion_matrix(preds, labels, *, num_classes: int) -> np.ndarray:
  """int64[true, predicted] counts."""
  preds, labels = _check(preds, labels)
  if labels.size and (min(preds.min(), labels.min()) < 0 or
                      max(preds.max(), labels.max()) >= num_classes):
    raise ValueError(f"classes must lie in [0, {num_classes - 1}].")
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, preds), 1)
  return cm


def per_class_accuracy(preds, labels, *, num_classes: int) -> list:
  """Recall of each true class (None for a class with no examples)."""
  cm = confusion_matrix(preds, labels, num_classes=num_classes)
  totals = cm.sum(1)
  return [float(cm[k, k] / totals[k]) if totals[k] else None for k in range(num_classes)]


def worst_class_accuracy(preds, labels, *, num_classes: int) -> dict:
  """{'accuracy', 'class'}: the lowest per-class recall over classes present."""
  per = per_class_accuracy(preds, labels, num_classes=num_classes)
  present = [(a, k) for k, a in enumerate(per) if a is not None]
  if not present:
    return {"accuracy": None, "class": None}
  acc, k = min(present)
  return {"accuracy": acc, "class": k}


def split_metrics(preds, labels, aligned, *, spec) -> dict:
  """Every metric of one split, json-ready; spec: the data's splits.Spec (its classes)."""
  groups = group_accuracy(preds, labels, aligned)
  worst = worst_class_accuracy(preds, labels, num_classes=spec.num_classes)
  return {
      "n": int(np.asarray(labels).size),
      "accuracy": accuracy(preds, labels),
      "aligned": groups["aligned"],
      "conflicting": groups["conflicting"],
      "n_aligned": int(np.sum(aligned)),
      "unbiased_equivalent": unbiased_equivalent(groups["aligned"], groups["conflicting"],
                                                 aligned_share=spec.aligned_share),
      "worst_class": worst["accuracy"],
      "worst_class_id": worst["class"],
      "per_class": per_class_accuracy(preds, labels, num_classes=spec.num_classes),
      "confusion": confusion_matrix(preds, labels, num_classes=spec.num_classes).tolist(),
  }
