"""PyTorch CPU baseline of `launch.speed`'s workloads; prints one JSON line of img/s.

Runs in its own virtual environment (PyTorch is never a dependency of ccmnist):

  python3 -m venv ~/torch-venv && ~/torch-venv/bin/pip install torch==2.13.0 numpy
  ~/torch-venv/bin/python tools/pytorch_baseline.py [--quick] [--repeats=3]

The workloads mirror ccmnist/speed.py: the study's CheaterCNN (ccmnist/models/cnn.py: conv
3->8 k9 s2 p4, ReLU; conv 8->16 k5 s2 p2, ReLU; conv 16->16 k3 s1 p1, ReLU; dense 784->10, on
pixels divided by 255), 2 threads, plain SGD (lr 1e-3), random uint8 data resident in memory and
gathered per step, and
  * train steps for erm, gradient_penalty (CE + 0.1 * mean of the squared input gradient of the
    correct logit w.r.t. [0, 1] inputs, taken with create_graph=True as losses.py defines it) and
    consistency (CE + 0.1 * mean squared logit difference, one forward over the concatenated base
    and counterfactual batch) at batch 64 and 256; a consistency step counts base images only;
  * eval: 5 batches of 1000 images, forward and accuracy;
  * PGD at the study setting: Linf eps 12.75, step 1.5, 30 steps, targeted CE, random start,
    batch 200, and a last forward to score the result.
Every workload runs `repeats` times interleaved and reports the median, as ccmnist.bench does.
The JSON line uses launch.speed's speed.json keys (train_img_per_s, eval_img_per_s, pgd_img_per_s).

`--epoch_npz=FILE` instead trains real epochs, as `launch.train` does, on a train split saved as
.npz (images [N, 28, 28, 3] uint8, labels [N]; `side_by_side.py --real_epoch` writes the quick
config's): the images held in memory as uint8 NCHW, every epoch a fresh permutation, each step
gathering its batch, converting it to float and taking an ERM SGD step; the last partial batch
dropped; evaluation excluded. It prints each epoch's img/s (the first includes warm-up).
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

LOSSES = ("erm", "gradient_penalty", "consistency")
BATCH_SIZES = (64, 256)
PGD = dict(eps=12.75, step_size=1.5, steps=30, batch=200)
LAM = 0.1
# The study's penalty is on the gradient w.r.t. [0, 1] inputs, 255x the pixel gradient.
UNIT_SCALE = 255.0


class CheaterCNN(nn.Module):
  """ccmnist.models.cnn.CheaterCNN in NCHW."""

  def __init__(self):
    super().__init__()
    self.convs = nn.ModuleList([nn.Conv2d(3, 8, 9, 2, 4), nn.Conv2d(8, 16, 5, 2, 2),
                                nn.Conv2d(16, 16, 3, 1, 1)])
    self.dense = nn.Linear(7 * 7 * 16, 10)

  def forward(self, x):
    x = x / 255.0
    for conv in self.convs:
      x = F.relu(conv(x))
    return self.dense(x.flatten(1))


def train_loss(model, images, labels, cf_images, loss_name):
  if loss_name == "consistency":
    logits, cf_logits = model(torch.cat([images, cf_images])).chunk(2)
    penalty = torch.mean(torch.square(logits - cf_logits))
  elif loss_name == "gradient_penalty":
    images = images.requires_grad_(True)
    logits = model(images)
    correct = logits.gather(1, labels[:, None]).sum()
    (g,) = torch.autograd.grad(correct, images, create_graph=True)
    penalty = torch.mean(torch.square(g * UNIT_SCALE))
  else:
    logits, penalty = model(images), 0.0
  return F.cross_entropy(logits, labels) + LAM * penalty


class TrainWorkload:
  """`steps` SGD steps of `loss_name` at `batch` on resident data; call() times them."""

  def __init__(self, data, loss_name, batch, steps):
    self.data, self.loss_name, self.batch, self.steps = data, loss_name, batch, steps
    self.model = CheaterCNN()
    self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3)
    n = data["labels"].shape[0]
    self.order = torch.from_numpy(np.random.default_rng(0).permutation(n))
    self.spe, self.i = n // batch, 0
    self.call()  # Warm-up.

  def step(self):
    idx = self.order[(self.i % self.spe) * self.batch:][:self.batch]
    self.i += 1
    images = self.data["images"][idx].float()
    cf = self.data["cf_images"][idx].float() if self.loss_name == "consistency" else None
    self.opt.zero_grad(set_to_none=True)
    loss = train_loss(self.model, images, self.data["labels"][idx], cf, self.loss_name)
    loss.backward()
    self.opt.step()

  def call(self):
    t = time.perf_counter()
    for _ in range(self.steps):
      self.step()
    return time.perf_counter() - t


def pgd(model, x0, targets, *, eps, step_size, steps):
  """Targeted Linf PGD with random start on pixels in [0, 255], as ccmnist.attacks.pgd."""
  x = torch.clamp(x0 + torch.empty_like(x0).uniform_(-eps, eps), 0.0, 255.0)
  for _ in range(steps):
    x.requires_grad_(True)
    loss = F.cross_entropy(model(x), targets, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    with torch.no_grad():
      x = torch.minimum(torch.maximum(x - step_size * torch.sign(g), x0 - eps), x0 + eps)
      x = torch.clamp(x, 0.0, 255.0)
  with torch.no_grad():
    success = model(x).argmax(-1) == targets
  return x, success


def run(repeats: int, train_images: int, eval_batches: int = 5) -> dict:
  rng = np.random.default_rng(0)
  n_data = max(4096, 4 * max(BATCH_SIZES))
  u8 = lambda: torch.from_numpy(rng.integers(0, 256, (n_data, 3, 28, 28), dtype=np.uint8))
  data = {"images": u8(), "labels": torch.from_numpy(rng.integers(0, 10, n_data)),
          "cf_images": u8()}
  train = {f"{loss}_b{b}": TrainWorkload(data, loss, b, max(1, train_images // b))
           for loss in LOSSES for b in BATCH_SIZES}
  model = train["erm_b64"].model
  ev_images = torch.from_numpy(rng.integers(0, 256, (1000, 3, 28, 28), dtype=np.uint8))
  ev_labels = torch.from_numpy(rng.integers(0, 10, 1000))

  def eval_call():
    with torch.no_grad():
      for _ in range(eval_batches):
        (model(ev_images.float()).argmax(-1) == ev_labels).float().mean().item()

  attack_model = CheaterCNN()
  attack_model.load_state_dict(model.state_dict())
  attack_model.requires_grad_(False)
  pgd_x0 = data["images"][:PGD["batch"]].float()
  targets = torch.full((PGD["batch"],), 3, dtype=torch.long)
  pgd_call = lambda: pgd(attack_model, pgd_x0, targets, eps=PGD["eps"],
                         step_size=PGD["step_size"], steps=PGD["steps"])

  def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t

  eval_call(), pgd_call()  # Warm-up.
  times = {name: [] for name in (*train, "eval", "pgd")}
  for _ in range(repeats):
    for name, w in train.items():
      times[name].append(w.call())
    times["eval"].append(timed(eval_call))
    times["pgd"].append(timed(pgd_call))
  med = {k: statistics.median(v) for k, v in times.items()}
  return {
      "torch_version": torch.__version__,
      "threads": torch.get_num_threads(),
      "repeats": repeats,
      "train_img_per_s": {k: w.steps * w.batch / med[k] for k, w in train.items()},
      "eval_img_per_s": eval_batches * 1000 / med["eval"],
      "pgd_img_per_s": PGD["batch"] / med["pgd"],
      "times_s": times,
  }


def train_epochs(npz: str, *, epochs: int, batch: int, lr: float) -> dict:
  """ERM SGD epochs on a saved train split; {'epoch_img_per_s': [...], ...} (see the docstring)."""
  with np.load(npz) as f:
    images = torch.from_numpy(np.ascontiguousarray(f["images"].transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(f["labels"].astype(np.int64))
  model = CheaterCNN()
  opt = torch.optim.SGD(model.parameters(), lr=lr)
  n, rates = len(labels), []
  steps = n // batch
  for _ in range(epochs):
    t = time.perf_counter()
    order = torch.randperm(n)
    losses = []
    for s in range(steps):
      idx = order[s * batch:(s + 1) * batch]
      opt.zero_grad(set_to_none=True)
      loss = F.cross_entropy(model(images[idx].float()), labels[idx])
      loss.backward()
      opt.step()
      losses.append(loss.detach())
    torch.stack(losses).mean().item()  # As launch.train reads its epoch's losses.
    rates.append(steps * batch / (time.perf_counter() - t))
  return {"torch_version": torch.__version__, "threads": torch.get_num_threads(),
          "train_size": n, "batch": batch, "lr": lr, "epoch_img_per_s": rates}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=3, help="Interleaved repeats; medians reported.")
  p.add_argument("--quick", action="store_true",
                 help="1280 images per train measurement, as `launch.speed --quick`.")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--epoch_npz", default="", help="Train real epochs on this split instead.")
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--lr", type=float, default=1e-2)
  a = p.parse_args()
  torch.set_num_threads(a.threads)
  torch.manual_seed(0)
  if a.epoch_npz:
    print(json.dumps(train_epochs(a.epoch_npz, epochs=a.epochs, batch=a.batch, lr=a.lr)))
  else:
    print(json.dumps(run(a.repeats, 1280 if a.quick else 5120)))


if __name__ == "__main__":
  main()
