"""Training: losses, jitted steps, and the resumable loop."""

from ccmnist.train.loop import load_run
from ccmnist.train.loop import replicas
from ccmnist.train.loop import train_and_evaluate

__all__ = ["load_run", "replicas", "train_and_evaluate"]
