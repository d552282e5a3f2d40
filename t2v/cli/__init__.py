"""The functions behind the entry points (train.py, evaluate.py, generate.py): the command-line layer only.

Nothing else in t2v imports from here; what the apps do lives in ``t2v.pipeline`` and ``t2v.eval``.
"""
