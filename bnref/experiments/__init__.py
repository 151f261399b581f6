"""Runnable experiments that reproduce the course notes' claims on real data (issue 5).

Not part of `reference/`: they need the optional extras matplotlib and scikit-learn. They import
from `reference/`, never the other way. Run one with `bnref experiment NAME` (see `cli.py`).
"""
