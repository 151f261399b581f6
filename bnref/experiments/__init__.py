"""Runnable experiments that reproduce the course notes' claims on real data.

Not part of `reference/`: they need the optional extras matplotlib and scikit-learn. They import
from `reference/`, never the other way, and train with its loop, `reference.training.train`
(`common.fit` records each epoch through its ``on_epoch`` callback). Run one with
`bnref experiment NAME` (see `cli.py`).
"""
