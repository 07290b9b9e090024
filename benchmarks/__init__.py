"""Reproducible measurements of coda against eager PyTorch and Inductor.

Run them all with `python -m benchmarks.run`.
"""
