"""Figure functions: arrays in, matplotlib Figure out; saving is the caller's."""
