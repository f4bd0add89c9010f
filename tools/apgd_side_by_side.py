"""Our APGD (ccmnist.attacks.apgd) beside torchattacks' on the same weights, images and budgets.

  python tools/apgd_side_by_side.py --workdir=/tmp/ccmnist/study_quick --size=quick \
      --torch_python=~/torch-venv/bin/python --models=cheater,counterfactual \
      --num_images=500 --epsilons=7.5,12.75 --json_out=docs/results/apgd_torchattacks/apgd.json

Run from the repository root with the ccmnist environment's python. The JAX side loads each
study model (the replica that stands for it downstream), attacks the first `num_images` images
of its --split (test_easy) with APGD-CE and APGD-DLR (untargeted, `steps` steps, one restart) and
writes the weights and images to a temporary npz; it then runs this same file under
--torch_python (`--side=torch`), which rebuilds the CheaterCNN in PyTorch from those weights
(conv kernels HWIO -> OIHW; the dense rows reordered from NHWC to NCHW flattening), checks that
its clean logits match ours, and runs torchattacks.APGD on [0, 1] inputs at eps / 255. Prints a
table of robust accuracy (the share still correct) per model, loss and epsilon on both sides,
and writes both to --json_out. PyTorch and torchattacks live only in the --torch_python venv.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the PyTorch side

def torch_side(npz_path: str, out_path: str, *, steps: int, seed: int) -> None:
  """Rebuilds each model in PyTorch and runs torchattacks.APGD; writes a JSON of results."""
  import torch  # pylint: disable=import-outside-toplevel
  import torchattacks  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  from torch.nn import functional as F  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(2)
  data = np.load(npz_path)
  names = [str(n) for n in data["names"]]
  epsilons = [float(e) for e in data["epsilons"]]

  class Cheater(nn.Module):
    """The CheaterCNN on [0, 1] NCHW inputs (torchattacks' range)."""

    def __init__(self, p):
      super().__init__()
      self.convs = nn.ModuleList([nn.Conv2d(3, 8, 9, 2, 4), nn.Conv2d(8, 16, 5, 2, 2),
                                  nn.Conv2d(16, 16, 3, 1, 1)])
      self.dense = nn.Linear(7 * 7 * 16, 10)
      with torch.no_grad():
        for i, conv in enumerate(self.convs):
          conv.weight.copy_(torch.from_numpy(p[f"Conv_{i}/kernel"].transpose(3, 2, 0, 1).copy()))
          conv.bias.copy_(torch.from_numpy(p[f"Conv_{i}/bias"]))
        k = p["Dense_0/kernel"].reshape(7, 7, 16, 10).transpose(2, 0, 1, 3).reshape(784, 10)
        self.dense.weight.copy_(torch.from_numpy(k.T.copy()))
        self.dense.bias.copy_(torch.from_numpy(p["Dense_0/bias"]))

    def forward(self, x):
      for conv in self.convs:
        x = F.relu(conv(x))
      return self.dense(x.flatten(1))

  out = {"torch": torch.__version__, "torchattacks": torchattacks.__version__, "models": {}}
  for name in names:
    p = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(name + "/")}
    model = Cheater(p).eval()
    x = torch.from_numpy(np.ascontiguousarray(data[f"{name}@images"].transpose(0, 3, 1, 2)))
    x = x / 255.0
    y = torch.from_numpy(data[f"{name}@labels"]).long()
    with torch.no_grad():
      logits = model(x).numpy()
    res = {"max_abs_logit_diff": float(np.abs(logits - data[f"{name}@logits"]).max()),
           "clean_accuracy": float(np.mean(logits.argmax(1) == y.numpy()))}
    for loss in ("ce", "dlr"):
      for eps in epsilons:
        atk = torchattacks.APGD(model, norm="Linf", eps=eps / 255.0, steps=steps, n_restarts=1,
                                seed=seed, loss=loss)
        t0 = time.time()
        adv = atk(x, y).detach()
        with torch.no_grad():
          acc = float((model(adv).argmax(1) == y).float().mean())
        linf = float((adv - x).abs().max()) * 255.0
        res[f"{loss}@{eps:g}"] = {"robust_accuracy": acc, "linf": linf,
                                  "seconds": time.time() - t0}
    out["models"][name] = res
  pathlib.Path(out_path).write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------- the JAX side

def jax_side(args) -> dict:
  """Our APGD on each model; exports weights and images for the PyTorch side."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, str(REPO))
  from ccmnist import layout  # pylint: disable=import-outside-toplevel
  from ccmnist.attacks import apgd as apgd_lib  # pylint: disable=import-outside-toplevel
  from ccmnist.data import splits as splits_lib  # pylint: disable=import-outside-toplevel
  from ccmnist.train import runs as runs_lib  # pylint: disable=import-outside-toplevel
  from configs import study as study_config  # pylint: disable=import-outside-toplevel

  study = study_config.get_config(args.size)
  runs = layout.downstream_runs(study, args.workdir, args.models)
  epsilons = [float(e) for e in args.epsilons.split(",")]
  export, out = {"names": np.array(list(runs)), "epsilons": np.array(epsilons)}, {}
  for name, (wd, replicas) in runs.items():
    replica = replicas[0]  # The first seed's replica.
    model, params, config = runs_lib.load_run(wd, replica=replica)
    if type(model).__name__ != "CheaterCNN":
      raise ValueError(f"{name} is a {type(model).__name__}; this tool maps the CheaterCNN only.")
    split = splits_lib.get_splits(config.data)[args.split]
    x = split["images"][:args.num_images].astype(np.float32)
    y = split["labels"][:args.num_images].astype(np.int32)
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(x)))
    flat = {f"{name}/{'/'.join(str(getattr(k, 'key', k)) for k in path)}": np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    export.update(flat)
    export.update({f"{name}@images": x, f"{name}@labels": y, f"{name}@logits": logits})
    res = {"run": [str(wd), int(replica)], "clean_accuracy": float(np.mean(logits.argmax(1) == y))}
    for loss in ("ce", "dlr"):
      for eps in epsilons:
        t0 = time.time()
        adv = np.concatenate([np.asarray(apgd_lib.apgd(
            model, params, x[i:i + args.batch], y[i:i + args.batch], eps=eps, steps=args.steps,
            loss=loss, key=jax.random.key(args.seed))) for i in range(0, len(x), args.batch)])
        pred = np.asarray(model.apply({"params": params}, jnp.asarray(adv))).argmax(1)
        res[f"{loss}@{eps:g}"] = {"robust_accuracy": float(np.mean(pred == y)),
                                  "linf": float(np.abs(adv - x).max()),
                                  "seconds": time.time() - t0}
    out[name] = res
    print(f"jax {name}: {res}", flush=True)
  np.savez(args.npz, **export)
  return {"jax": jax.__version__, "models": out}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  ap.add_argument("--side", default="both", choices=("both", "torch"))
  ap.add_argument("--workdir", help="a study workdir (runs/cheater, runs/counterfactual, ...)")
  ap.add_argument("--size", default="quick", help="the study config's size (configs/study.py)")
  ap.add_argument("--models", default="cheater,counterfactual")
  ap.add_argument("--num_images", type=int, default=500)
  ap.add_argument("--split", default="test_easy",
                  help="whose first images are attacked (robust accuracy needs correct ones)")
  ap.add_argument("--epsilons", default="7.5,12.75", help="Linf budgets, pixel units")
  ap.add_argument("--steps", type=int, default=100)
  ap.add_argument("--batch", type=int, default=250)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--torch_python", default="~/torch-venv/bin/python")
  ap.add_argument("--json_out", default="")
  ap.add_argument("--npz", default="", help="(internal) the exported weights and images")
  ap.add_argument("--torch_out", default="", help="(internal) the PyTorch side's JSON")
  args = ap.parse_args()
  if args.side == "torch":
    torch_side(args.npz, args.torch_out, steps=args.steps, seed=args.seed)
    return
  if not args.workdir:
    raise ValueError("--workdir is required: a study workdir with trained runs.")
  with tempfile.TemporaryDirectory() as tmp:
    args.npz = str(pathlib.Path(tmp) / "export.npz")
    ours = jax_side(args)
    torch_out = pathlib.Path(tmp) / "torch.json"
    subprocess.run([str(pathlib.Path(args.torch_python).expanduser()), __file__, "--side=torch",
                    f"--npz={args.npz}", f"--torch_out={torch_out}", f"--steps={args.steps}",
                    f"--seed={args.seed}"], check=True)
    theirs = json.loads(torch_out.read_text())
  result = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
            "settings": {k: getattr(args, k) for k in ("size", "models", "split", "num_images",
                                                       "epsilons",
                                                       "steps", "seed")},
            "ours": ours, "torchattacks": theirs}
  rows = ["| model | loss | eps | ours robust acc | torchattacks robust acc | difference |",
          "|---|---|---|---|---|---|"]
  for name, res in ours["models"].items():
    other = theirs["models"][name]
    for key in (k for k in res if "@" in k):
      loss, eps = key.split("@")
      a, b = res[key]["robust_accuracy"], other[key]["robust_accuracy"]
      rows.append(f"| {name} | {loss} | {eps} | {100 * a:.1f}% | {100 * b:.1f}% | "
                  f"{100 * (a - b):+.1f} |")
    rows.append(f"| {name} | clean | 0 | {100 * res['clean_accuracy']:.1f}% | "
                f"{100 * other['clean_accuracy']:.1f}% | max |logit diff| "
                f"{other['max_abs_logit_diff']:.1e} |")
  result["table"] = rows
  print("\n".join(rows))
  if args.json_out:
    pathlib.Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json_out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
