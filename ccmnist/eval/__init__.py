"""Evaluation: accuracy by split and group, confusion, the color-swap probe, a run's eval.json."""

from ccmnist.eval.metrics import accuracy
from ccmnist.eval.metrics import confusion_matrix
from ccmnist.eval.metrics import group_accuracy
from ccmnist.eval.metrics import per_class_accuracy
from ccmnist.eval.metrics import split_metrics
from ccmnist.eval.metrics import unbiased_equivalent
from ccmnist.eval.metrics import worst_class_accuracy
from ccmnist.eval.predict import make_forward
from ccmnist.eval.predict import predict_logits
from ccmnist.eval.color_swap import color_swap_images
from ccmnist.eval.color_swap import color_swap_probe
from ccmnist.eval.run import evaluate_params
from ccmnist.eval.run import evaluate_training_run
from ccmnist.eval.run import read_curves

__all__ = [
    "accuracy",
    "color_swap_images",
    "color_swap_probe",
    "confusion_matrix",
    "evaluate_params",
    "evaluate_training_run",
    "group_accuracy",
    "make_forward",
    "per_class_accuracy",
    "predict_logits",
    "read_curves",
    "split_metrics",
    "unbiased_equivalent",
    "worst_class_accuracy",
]
