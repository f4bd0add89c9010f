"""Groups and environments of a colored split: pure numpy, for the group-aware methods.

A group is a (label, aligned) pair: group id = 2 * label + aligned, so digit d's bias-conflicting
examples (a color that cues another digit) are group 2d and its aligned ones group 2d + 1; the
study's 10 digits give NUM_GROUPS = 20 (other class counts: the num_classes keyword).
"""

import numpy as np

NUM_CLASSES = 10  # The study's (MNIST's digits).
NUM_GROUPS = 2 * NUM_CLASSES


def _check_pair(labels, aligned, num_classes):
  labels, aligned = np.asarray(labels), np.asarray(aligned)
  if labels.shape != aligned.shape or labels.ndim != 1:
    raise ValueError(f"labels and aligned must be two 1-d arrays of one length; got shapes "
                     f"{labels.shape} and {aligned.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, {num_classes - 1}].")
  return labels.astype(np.int64), aligned.astype(bool)


def group_ids(labels, aligned, *, num_classes: int = NUM_CLASSES) -> np.ndarray:
  """int32[N]: 2 * label + aligned, in [0, 2 * num_classes)."""
  labels, aligned = _check_pair(labels, aligned, num_classes)
  return (2 * labels + aligned).astype(np.int32)


def group_counts(labels, aligned, *, num_classes: int = NUM_CLASSES) -> np.ndarray:
  """int64[2 * num_classes]: examples per group (see group_ids)."""
  return np.bincount(group_ids(labels, aligned, num_classes=num_classes),
                     minlength=2 * num_classes).astype(np.int64)


def balanced_subset(labels, aligned, rng: np.random.Generator, per_group=None, *,
                    num_classes: int = NUM_CLASSES) -> np.ndarray:
  """Sorted indices of a subsample holding `per_group` examples of every group, drawn at random
  within each group; per_group None: as many as the smallest group has."""
  counts = group_counts(labels, aligned, num_classes=num_classes)
  smallest = int(counts.argmin())
  if per_group is None:
    per_group = int(counts[smallest])
  if per_group < 1 or per_group > counts[smallest]:
    raise ValueError(
        f"A balanced subset of {per_group} per group needs 1 <= per_group <= the smallest "
        f"group's {counts[smallest]} examples (label {smallest // 2}, "
        f"{'aligned' if smallest % 2 else 'conflicting'}); use a larger or less biased set "
        f"(e.g. val_balanced) or a smaller per_group.")
  ids = group_ids(labels, aligned, num_classes=num_classes)
  picks = [rng.permutation(np.flatnonzero(ids == g))[:per_group] for g in range(counts.size)]
  return np.sort(np.concatenate(picks))


def env_conflict_counts(n: int, n_conflict: int, conflict_scales) -> tuple:
  """(sizes, conflicting): int64[E] each, the E = len(conflict_scales) environments' sizes
  (n split as evenly as possible, the first n % E one larger) and bias-conflicting counts
  (about scale_e times the overall fraction times size_e, summing to n_conflict exactly);
  ValueError when no such split exists."""
  scales = np.asarray(conflict_scales, np.float64)
  if scales.ndim != 1 or scales.size < 1 or n < scales.size:
    raise ValueError(f"conflict_scales must be a non-empty sequence, one scale per environment,"
                     f" no more environments than the {n} examples; got {conflict_scales!r}.")
  if not np.all(np.isfinite(scales)) or scales.min() < 0 or abs(scales.mean() - 1) > 1e-6:
    raise ValueError(f"conflict_scales must be >= 0 and average 1 (each environment's "
                     f"conflicting fraction over the whole set's); got {conflict_scales!r}, "
                     f"mean {scales.mean():.6g}.")
  e = scales.size
  sizes = np.full(e, n // e, np.int64) + (np.arange(e) < n % e)
  target = scales * sizes
  target = target * (n_conflict / target.sum()) if target.sum() > 0 else target
  conflicting = np.floor(target).astype(np.int64)
  # Largest remainders: the counts sum to n_conflict exactly.
  short = int(n_conflict - conflicting.sum())
  conflicting[np.argsort(-(target - conflicting), kind="stable")[:short]] += 1
  over = np.flatnonzero(conflicting > sizes)
  if over.size:
    i = int(over[0])
    raise ValueError(
        f"Environment {i} would need {conflicting[i]} bias-conflicting examples but holds "
        f"{sizes[i]}: scale {scales[i]:g} times the set's conflicting fraction "
        f"{n_conflict / n:.4g} exceeds 1; use scales below {n / max(n_conflict, 1):.4g}.")
  return sizes, conflicting


def assign_envs(aligned, conflict_scales, rng: np.random.Generator) -> np.ndarray:
  """int32[N]: each example's environment, 0 .. E-1 for E = len(conflict_scales).

  The environments are equal in size (up to one example) and environment e's bias-conflicting
  fraction is conflict_scales[e] times the whole set's (the scales average 1): (1.5, 0.5) on a
  set 5% conflicting gives environments 7.5% and 2.5% conflicting. Which aligned and which
  conflicting examples go where is drawn from `rng`. ValueError when impossible (a scale times
  the set's fraction above 1).
  """
  aligned = np.asarray(aligned)
  if aligned.ndim != 1:
    raise ValueError(f"aligned must be a 1-d bool array; got shape {aligned.shape}.")
  aligned = aligned.astype(bool)
  conflict_idx = rng.permutation(np.flatnonzero(~aligned))
  aligned_idx = rng.permutation(np.flatnonzero(aligned))
  sizes, conflicting = env_conflict_counts(aligned.size, conflict_idx.size, conflict_scales)
  envs = np.empty(aligned.size, np.int32)
  c_ends, a_ends = np.cumsum(conflicting), np.cumsum(sizes - conflicting)
  for e in range(sizes.size):
    envs[conflict_idx[c_ends[e] - conflicting[e]:c_ends[e]]] = e
    envs[aligned_idx[a_ends[e] - (sizes[e] - conflicting[e]):a_ends[e]]] = e
  return envs


def aligned(colors, labels, color_class) -> np.ndarray:
  """bool[N]: whether each image's color cues its own label (color_class[c]: the class color c
  cues, splits.Spec.color_class; the palette size and class count may differ)."""
  color_class, colors = np.asarray(color_class), np.asarray(colors)
  if colors.size and (colors.min() < 0 or colors.max() >= color_class.size):
    raise ValueError(f"color ids must lie in [0, {color_class.size - 1}] (the palette's colors).")
  return color_class[colors] == np.asarray(labels)
