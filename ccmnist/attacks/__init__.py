"""Adversarial attacks and the analyses built on them.

  pgd.py      pgd(...), fgsm(...); Attack / from_config(cfg.pgd): an attack built once, then
              called; success criteria; each attack one compiled program.
  sweep.py    sweep (epsilons vmapped), minimal_eps (bisection), evaluate, transfer_matrix,
              select_examples: one compiled program per batch each.
  apgd.py     apgd(...): APGD (Croce and Hein 2020), CE / DLR / targeted DLR, Linf; sweep.
  square.py   square(...): the Square attack, Linf, forward passes only.
  smoothing.py  randomized smoothing: certify(...), predict(...), certified accuracy.
  suite.py    the suite per model (APGD-CE, APGD-T, Square), gradient-masking checks,
              certified accuracy per sigma.
  anatomy.py  where perturbations lie (chromatic share, stroke mask); numpy.
  run.py      attack_runs(runs, cfg, out_dir): the whole analysis of trained runs, the suite
              and smoothing included.
"""
