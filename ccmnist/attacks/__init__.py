"""Adversarial attacks and the analyses built on them.

  pgd.py      pgd(...), fgsm(...); Attack / from_config(cfg.pgd): an attack built once, then
              called; success criteria; each attack one compiled program.
  sweep.py    sweep (epsilons vmapped), minimal_eps (bisection), evaluate, transfer_matrix,
              select_examples: one compiled program per batch each.
  anatomy.py  where perturbations lie (chromatic share, stroke mask); numpy.
  run.py      attack_runs(runs, cfg, out_dir): the whole analysis of trained runs.
"""
