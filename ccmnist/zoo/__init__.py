"""The debiasing benchmark: methods, protocols and ratios compared, with published numbers."""
