"""Interpretability: Grad-CAM and friends, feature visualization, representation measures.

gradcam.py         attribution maps (Grad-CAM, Grad-CAM++, saliency, Integrated Gradients),
                   spread, model-randomization sanity checks.
featviz.py         activation maximization of every channel of a layer.
representation.py  linear probes, counterfactual invariance and causal patching per layer and
                   channel, each beside its null (random inits, a hue-blind copy).
topk.py            the dataset images that drive each channel most.
run.py             interpret_runs(runs, cfg, out_dir): all of them on trained runs.
"""
