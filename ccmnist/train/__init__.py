"""Training: losses, jitted steps, the resumable loop, and the training-workdir format."""

from ccmnist.train.loop import train_and_evaluate
from ccmnist.train.runs import load_run
from ccmnist.train.runs import replicas

__all__ = ["load_run", "replicas", "train_and_evaluate"]
