"""LfF's own Colored-MNIST training loop (alinlab/LfF), timed in PyTorch; prints one JSON line.

Runs in its own virtual environment (PyTorch is never a dependency of ccmnist; see
tools/README.md):

  ~/torch-venv/bin/python tools/lff_pytorch.py --mode=lff --epochs=2
  ~/torch-venv/bin/python tools/lff_pytorch.py --mode=vanilla --epochs=2 --train_size=52000

The loop is the authors' (github.com/alinlab/LfF at the commit ccmnist/zoo/published.py pins),
step for step: train.py for --mode=lff, train_vanilla.py for --mode=vanilla, with config.py's
colored_mnist settings.
  * Data as data/attr_dataset.py holds it: images a numpy uint8 array [N, 28, 28, 3] (HWC, as
    make_dataset.py saves them), attrs a LongTensor [N, 2] (digit, color); each item goes through
    their transform, torchvision's ToTensor (uint8 HWC -> float CHW / 255), in __getitem__, and
    is wrapped by IdxDataset as (index, image, attr). Their DataLoader: batch 256, shuffle,
    num_workers 16, pin_memory (a no-op without CUDA), a fresh iterator (and workers) per epoch;
    valid: batch 256, no shuffle, 16 workers.
  * module/mlp.py's MLP (2352 -> 100 -> 100 -> 100 -> 10, ReLU; it divides its input by 255
    again), Adam lr 1e-3, weight decay 0 (one optimizer per network).
  * lff: module/loss.py's GeneralizedCELoss (q 0.7), util.py's per-sample EMA (alpha 0.7) and its
    class-wise max normalization (a numpy where over the whole training set per class per step),
    the weight l_b / (l_b + l_d + 1e-8), loss GCE_b.mean() + (W * CE_d).mean(), and the NaN checks
    (each a .item()). vanilla: one MLP, mean CE.
  * Every 10 steps the scalars their SummaryWriter logs are computed (EMA variance and std over the
    training set, aligned and skewed means) but not written (no tensorboard here, and no tqdm
    progress bars); every
    `valid_freq` steps, from step 0, each network is evaluated on valid with util.py's
    MultiDimAverageMeter (a Python loop over the batch's samples).
Their valid_freq is 235 = the steps of one epoch of their 60,000 digits; here it is the steps of
one epoch of --train_size digits, so each epoch holds one evaluation, as theirs does.

Data: MNIST from ccmnist's cache (~/.cache/ccmnist or $CCMNIST_CACHE, the raw IDX files, parsed
here with numpy) when present, else random MNIST-shaped digits; colored roughly as their
make_dataset.py does (the digit times a per-color mean plus N(0, std) jitter, clamped; a
`--ratio` share of each class takes another color). The colors are not their colors.th: they do
not matter for speed.

Timed: each epoch's wall time (its evaluation included), split into data (waiting on the
DataLoader), step (the rest of the training step) and eval. Per-model time is extrapolated from
the measured epochs to their 100 (the median epoch after the first, whose worker start-up and
caches are warm-up, x 100; with one measured epoch, that epoch).
"""

import argparse
import gzip
import json
import os
import pathlib
import statistics
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

try:
  from torchvision import transforms as T
  TO_TENSOR = T.ToTensor()
except ImportError:  # torchvision's ToTensor on a uint8 HWC array, for environments without it.
  def TO_TENSOR(pic):  # pylint: disable=invalid-name
    return torch.from_numpy(np.ascontiguousarray(pic.transpose((2, 0, 1)))).float().div(255)

# config.py: colored_mnist and the defaults.
BATCH = 256
LR = 1e-3
WEIGHT_DECAY = 0.0
NUM_WORKERS = 16
MODEL_EPOCHS = 100  # main_num_steps = 235 * 100.
GCE_Q = 0.7
EMA_ALPHA = 0.7
LOG_FREQ = 10
VALID_BATCH = 256
COLOR_STD = 0.005  # Severity 4, the one their script trains.
TARGET_ATTR, BIAS_ATTR = 0, 1


# ----------------------------------------------------------------------------- data


def read_idx(path: pathlib.Path) -> np.ndarray:
  """An IDX file (MNIST's format; .gz too) as a numpy array."""
  raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
  if raw[:2] != b"\0\0" or raw[2] != 8:
    raise ValueError(f"{path} is not an unsigned-byte IDX file; delete it or point "
                     "$CCMNIST_CACHE at a folder of MNIST's IDX files.")
  ndim = raw[3]
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str):
  """(images [N, 28, 28] uint8, labels [N]) of MNIST's 'train' or 't10k' from ccmnist's cache,
  or None when it is not there."""
  cache = pathlib.Path(os.environ.get("CCMNIST_CACHE", "~/.cache/ccmnist")).expanduser()
  for suffix in ("", ".gz"):
    images = cache / f"{split}-images-idx3-ubyte{suffix}"
    labels = cache / f"{split}-labels-idx1-ubyte{suffix}"
    if images.exists() and labels.exists():
      return read_idx(images), read_idx(labels).astype(np.int64)
  return None


def random_digits(n: int, rng: np.random.Generator):
  """MNIST-shaped stand-ins: a bright blob on black per image, random labels."""
  yy, xx = np.mgrid[:28, :28]
  centers = rng.uniform(8, 20, (n, 2, 1, 1))
  d2 = (yy - centers[:, 0]) ** 2 + (xx - centers[:, 1]) ** 2
  images = np.clip(255 * np.exp(-d2 / 18.0) * rng.uniform(0.6, 1.0, (n, 1, 1)), 0, 255)
  return images.astype(np.uint8), rng.integers(0, 10, n).astype(np.int64)


def palette() -> np.ndarray:
  """Ten distinct mean colors in [0, 1] (not LfF's colors.th: speed does not depend on them)."""
  hues = np.arange(10) / 10.0
  k = (np.array([5.0, 3.0, 1.0])[None] + hues[:, None] * 6) % 6
  return 1.0 - np.clip(np.minimum(k, 4 - k), 0, 1)


def colorize(digits: np.ndarray, labels: np.ndarray, aligned: float, rng: np.random.Generator):
  """(images [N, 28, 28, 3] uint8 HWC, attrs [N, 2] (digit, color)), as make_dataset.py makes
  them: a share `aligned` of the digits takes its class's color, the rest another one; each
  image the grey digit times clamp(mean color + N(0, std)), truncated to uint8."""
  n = len(labels)
  other = (labels + rng.integers(1, 10, n)) % 10
  color = np.where(rng.random(n) < aligned, labels, other)
  rgb = np.clip(palette()[color] + rng.normal(0, COLOR_STD, (n, 3)), 0, 1).astype(np.float32)
  images = np.empty((n, 28, 28, 3), np.uint8)
  for i in range(0, n, 10_000):  # In chunks: the float product of all 60k would take 0.5 GB.
    images[i:i + 10_000] = digits[i:i + 10_000, ..., None] * rgb[i:i + 10_000, None, None, :]
  return images, np.stack([labels, color], 1)


def make_splits(train_size: int, valid_size: int, ratio: float, seed: int):
  """(train, valid, source): each split a (images, attrs) pair; valid colored uniformly
  (their bias-aligned ratio 0.1)."""
  rng = np.random.default_rng(seed)
  train, test = load_mnist("train"), load_mnist("t10k")
  source = "mnist"
  if train is None or test is None:
    source = "random"
    train, test = random_digits(train_size, rng), random_digits(valid_size, rng)
  if train_size > len(train[1]) or valid_size > len(test[1]):
    raise ValueError(f"--train_size={train_size} / --valid_size={valid_size} exceed the "
                     f"{len(train[1])} / {len(test[1])} digits available; ask for fewer.")
  train = colorize(train[0][:train_size], train[1][:train_size], 1 - ratio, rng)
  valid = colorize(test[0][:valid_size], test[1][:valid_size], 0.1, rng)
  return train, valid, source


class AttributeDataset(Dataset):
  """data/attr_dataset.py's dataset, from arrays instead of images.npy / attrs.npy."""

  def __init__(self, images, attrs, transform=None):
    super().__init__()
    self.data = images
    self.attr = torch.LongTensor(attrs)
    self.query_attr = self.attr
    self.transform = transform

  def __len__(self):
    return self.attr.size(0)

  def __getitem__(self, index):
    image, attr = self.data[index], self.query_attr[index]
    if self.transform is not None:
      image = self.transform(image)
    return image, attr


class IdxDataset(Dataset):
  """data/util.py's IdxDataset."""

  def __init__(self, dataset):
    self.dataset = dataset

  def __len__(self):
    return len(self.dataset)

  def __getitem__(self, idx):
    return (idx, *self.dataset[idx])


# ----------------------------------------------------------------------------- their modules


class MLP(nn.Module):
  """module/mlp.py."""

  def __init__(self, num_classes=10):
    super().__init__()
    self.feature = nn.Sequential(nn.Linear(3 * 28 * 28, 100), nn.ReLU(), nn.Linear(100, 100),
                                 nn.ReLU(), nn.Linear(100, 100), nn.ReLU())
    self.classifier = nn.Linear(100, num_classes)

  def forward(self, x):
    x = x.view(x.size(0), -1) / 255
    return self.classifier(self.feature(x))


class GeneralizedCELoss(nn.Module):
  """module/loss.py."""

  def __init__(self, q=GCE_Q):
    super().__init__()
    self.q = q

  def forward(self, logits, targets):
    p = F.softmax(logits, dim=1)
    if np.isnan(p.mean().item()):
      raise NameError("GCE_p")
    yg = torch.gather(p, 1, torch.unsqueeze(targets, 1))
    loss_weight = (yg.squeeze().detach() ** self.q) * self.q
    if np.isnan(yg.mean().item()):
      raise NameError("GCE_Yg")
    return F.cross_entropy(logits, targets, reduction="none") * loss_weight


class EMA:
  """util.py's per-sample loss EMA."""

  def __init__(self, label, alpha=0.9):
    self.label = label
    self.alpha = alpha
    self.parameter = torch.zeros(label.size(0))
    self.updated = torch.zeros(label.size(0))

  def update(self, data, index):
    self.parameter[index] = (self.alpha * self.parameter[index]
                             + (1 - self.alpha * self.updated[index]) * data)
    self.updated[index] = 1

  def max_loss(self, label):
    label_index = np.where(self.label == label)[0]
    return self.parameter[label_index].max()


class MultiDimAverageMeter:
  """util.py's per-(digit, color) accuracy meter."""

  def __init__(self, dims):
    self.dims = dims
    self.cum = torch.zeros(int(np.prod(dims)))
    self.cnt = torch.zeros(int(np.prod(dims)))
    self.idx_helper = torch.arange(int(np.prod(dims)), dtype=torch.long).reshape(*dims)

  def add(self, vals, idxs):
    flattened_idx = torch.stack([self.idx_helper[tuple(idxs[i])] for i in range(idxs.size(0))],
                                dim=0)
    self.cum.index_add_(0, flattened_idx, vals.view(-1).float())
    self.cnt.index_add_(0, flattened_idx, torch.ones_like(vals.view(-1), dtype=torch.float))

  def get_mean(self):
    return (self.cum / self.cnt).reshape(*self.dims)


# ----------------------------------------------------------------------------- their loop


def evaluate(model, data_loader, attr_dims, device):
  """train.py's evaluate: group accuracies of `model` on the loader."""
  model.eval()
  meter = MultiDimAverageMeter(attr_dims)
  for _, data, attr in data_loader:
    label = attr[:, TARGET_ATTR]
    data, attr, label = data.to(device), attr.to(device), label.to(device)
    with torch.no_grad():
      logit = model(data)
      pred = logit.data.max(1, keepdim=True)[1].squeeze(1)
      correct = (pred == label).long()
    attr = attr[:, [TARGET_ATTR, BIAS_ATTR]]
    meter.add(correct.cpu(), attr.cpu())
  model.train()
  return meter.get_mean()


def adam(model):
  return torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)


def make_step(mode: str, train_target_attr, num_classes: int, device):
  """One training step of train.py (lff) or train_vanilla.py (vanilla) as a closure over its
  models and state: step(step_index, index, data, attr) -> None."""
  if mode == "vanilla":
    model = MLP(num_classes).to(device)
    optimizer = adam(model)
    label_criterion = nn.CrossEntropyLoss(reduction="none")

    def vanilla_step(step, index, data, attr):
      del index
      data, attr = data.to(device), attr.to(device)
      label = attr[:, TARGET_ATTR]
      logit = model(data)
      loss_per_sample = label_criterion(logit.squeeze(1), label)
      loss = loss_per_sample.mean()
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      if step % LOG_FREQ == 0:  # The scalars their writer logs.
        float(loss.detach().cpu())
        bias_attr = attr[:, BIAS_ATTR]
        loss_per_sample = loss_per_sample.detach()
        if (label == bias_attr).any().item():
          float(loss_per_sample[label == bias_attr].mean())
        if (label != bias_attr).any().item():
          float(loss_per_sample[label != bias_attr].mean())

    return vanilla_step, (model,)

  model_b, model_d = MLP(num_classes).to(device), MLP(num_classes).to(device)
  optimizer_b, optimizer_d = adam(model_b), adam(model_d)
  criterion = nn.CrossEntropyLoss(reduction="none")
  bias_criterion = GeneralizedCELoss()
  ema_b = EMA(torch.LongTensor(train_target_attr), alpha=EMA_ALPHA)
  ema_d = EMA(torch.LongTensor(train_target_attr), alpha=EMA_ALPHA)

  def lff_step(step, index, data, attr):
    data, attr = data.to(device), attr.to(device)
    label = attr[:, TARGET_ATTR]
    logit_b = model_b(data)
    if np.isnan(logit_b.mean().item()):
      raise NameError("logit_b")
    logit_d = model_d(data)
    loss_b = criterion(logit_b, label).cpu().detach()
    loss_d = criterion(logit_d, label).cpu().detach()
    if np.isnan(loss_b.mean().item()):
      raise NameError("loss_b")
    if np.isnan(loss_d.mean().item()):
      raise NameError("loss_d")
    loss_per_sample_b, loss_per_sample_d = loss_b, loss_d
    ema_b.update(loss_b, index)
    ema_d.update(loss_d, index)
    loss_b = ema_b.parameter[index].clone().detach()
    loss_d = ema_d.parameter[index].clone().detach()
    if np.isnan(loss_b.mean().item()):
      raise NameError("loss_b_ema")
    if np.isnan(loss_d.mean().item()):
      raise NameError("loss_d_ema")
    label_cpu = label.cpu()
    for c in range(num_classes):
      class_index = np.where(label_cpu == c)[0]
      loss_b[class_index] /= ema_b.max_loss(c)
      loss_d[class_index] /= ema_d.max_loss(c)
    loss_weight = loss_b / (loss_b + loss_d + 1e-8)
    if np.isnan(loss_weight.mean().item()):
      raise NameError("loss_weight")
    loss_b_update = bias_criterion(logit_b, label)
    if np.isnan(loss_b_update.mean().item()):
      raise NameError("loss_b_update")
    loss_d_update = criterion(logit_d, label) * loss_weight.to(device)
    if np.isnan(loss_d_update.mean().item()):
      raise NameError("loss_d_update")
    loss = loss_b_update.mean() + loss_d_update.mean()
    loss_weight.mean().item()  # Their num_updated counter.
    optimizer_b.zero_grad()
    optimizer_d.zero_grad()
    loss.backward()
    optimizer_b.step()
    optimizer_d.step()
    if step % LOG_FREQ == 0:  # The scalars their writer logs.
      bias_attr = attr[:, BIAS_ATTR]
      aligned, skewed = label == bias_attr, label != bias_attr
      for v in (loss_per_sample_b.mean(), loss_per_sample_d.mean(), ema_b.parameter.var(),
                ema_b.parameter.std(), ema_d.parameter.var(), ema_d.parameter.std()):
        float(v)
      for mask in (aligned, skewed):
        if mask.any().item():
          for v in (loss_per_sample_b[mask.cpu()], loss_per_sample_d[mask.cpu()],
                    loss_weight[mask.cpu()]):
            float(v.mean())

  return lff_step, (model_b, model_d)


def per_epoch(epochs: list, key: str) -> float:
  """The median `key` over the epochs after the first (warm-up), or the only epoch's."""
  values = [e[key] for e in epochs]
  return statistics.median(values[1:]) if len(values) > 1 else values[0]


def train(a) -> dict:
  """Their loop for a.epochs epochs; the timing record."""
  torch.manual_seed(a.seed)
  device = torch.device(a.device)
  (train_images, train_attrs), (valid_images, valid_attrs), source = make_splits(
      a.train_size, a.valid_size, a.ratio, a.seed)
  train_dataset = AttributeDataset(train_images, train_attrs, TO_TENSOR)
  valid_dataset = AttributeDataset(valid_images, valid_attrs, TO_TENSOR)
  train_target_attr = train_dataset.attr[:, TARGET_ATTR]
  attr_dims = [int(torch.max(train_target_attr).item()) + 1,
               int(torch.max(train_dataset.attr[:, BIAS_ATTR]).item()) + 1]
  num_classes = attr_dims[0]
  pin = device.type == "cuda"  # Their pin_memory=True; without CUDA it only warns.
  train_loader = DataLoader(IdxDataset(train_dataset), batch_size=BATCH, shuffle=True,
                            num_workers=a.num_workers, pin_memory=pin)
  valid_loader = DataLoader(IdxDataset(valid_dataset), batch_size=VALID_BATCH, shuffle=False,
                            num_workers=a.num_workers, pin_memory=pin)
  steps_per_epoch = len(train_loader)
  valid_freq = steps_per_epoch
  step_fn, models = make_step(a.mode, train_target_attr, num_classes, device)

  epochs, train_iter = [], None
  for step in range(a.epochs * steps_per_epoch):
    if step % steps_per_epoch == 0:
      epochs.append({"wall_s": 0.0, "data_s": 0.0, "step_s": 0.0, "eval_s": 0.0, "images": 0})
      t_epoch = time.perf_counter()
    e = epochs[-1]
    t0 = time.perf_counter()
    try:
      index, data, attr = next(train_iter)
    except (StopIteration, TypeError):  # Their bare except: the first step and each epoch end.
      train_iter = iter(train_loader)
      index, data, attr = next(train_iter)
    t1 = time.perf_counter()
    step_fn(step, index, data, attr)
    t2 = time.perf_counter()
    if step % valid_freq == 0:
      for model in models:
        torch.mean(evaluate(model, valid_loader, attr_dims, device))
    t3 = time.perf_counter()
    e["data_s"] += t1 - t0
    e["step_s"] += t2 - t1
    e["eval_s"] += t3 - t2
    e["images"] += int(data.size(0))
    e["wall_s"] = t3 - t_epoch

  s_per_epoch = per_epoch(epochs, "wall_s")
  train_s = [e["data_s"] + e["step_s"] for e in epochs]
  return {
      "mode": a.mode, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
      "num_workers": a.num_workers, "device": str(device), "data": source,
      "train_size": a.train_size, "valid_size": a.valid_size, "batch": BATCH,
      "steps_per_epoch": steps_per_epoch, "valid_freq": valid_freq, "epochs": epochs,
      "model_epochs": MODEL_EPOCHS, "s_per_epoch": s_per_epoch,
      "s_per_model": MODEL_EPOCHS * s_per_epoch,
      "data_s_per_epoch": per_epoch(epochs, "data_s"),
      "step_s_per_epoch": per_epoch(epochs, "step_s"),
      "eval_s_per_epoch": per_epoch(epochs, "eval_s"),
      "first_epoch_s": epochs[0]["wall_s"],
      "train_img_per_s": per_epoch([{"v": e["images"] / t} for e, t in zip(epochs, train_s)],
                                   "v"),
      "step_img_per_s": per_epoch([{"v": e["images"] / e["step_s"]} for e in epochs], "v"),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--mode", choices=("vanilla", "lff"), default="lff",
                 help="train_vanilla.py (one MLP, CE) or train.py (LfF's two MLPs).")
  p.add_argument("--epochs", type=int, default=2, help="Epochs measured.")
  p.add_argument("--train_size", type=int, default=60_000, help="Their train split: 60,000.")
  p.add_argument("--valid_size", type=int, default=10_000, help="Their valid split: 10,000.")
  p.add_argument("--ratio", type=float, default=0.01,
                 help="Bias-conflicting share of train (their script's skewed3: 0.01).")
  p.add_argument("--num_workers", type=int, default=NUM_WORKERS,
                 help="DataLoader workers (their code: 16).")
  p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
  p.add_argument("--device", default="cpu")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  if a.epochs < 1 or a.train_size < BATCH or a.valid_size < 1 or a.num_workers < 0:
    p.error("--epochs and --valid_size must be >= 1, --train_size >= 256 (one batch), "
            "--num_workers >= 0.")
  if not 0 <= a.ratio < 1:
    p.error(f"--ratio={a.ratio}: give the bias-conflicting share in [0, 1).")
  torch.set_num_threads(a.threads)
  print(json.dumps(train(a)), flush=True)


if __name__ == "__main__":
  main()
