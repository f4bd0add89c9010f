"""Interpretability: Grad-CAM and friends, feature visualization, channel selectivity.

gradcam.py      attribution maps (Grad-CAM, Grad-CAM++, saliency, Integrated Gradients), spread,
                model-randomization sanity checks.
featviz.py      activation maximization of every channel of a layer.
selectivity.py  how much of each channel's response is color and how much is shape.
run.py          interpret_runs(runs, cfg, out_dir): all of them on trained runs.
"""
