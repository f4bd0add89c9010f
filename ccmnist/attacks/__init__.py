"""Adversarial attacks and the analyses built on them.

  pgd.py     pgd(...), fgsm(...), success criteria; each attack one compiled program.
  sweep.py   epsilon sweeps (vmapped), minimal epsilon (bisection), transfer, anatomy.
  run.py     attack_runs(runs, cfg, out_dir), default_config(variant): the whole analysis.
"""
