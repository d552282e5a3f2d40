"""Evaluation: does the clip mean the sentence? The attribute probe (probe.py), FD/KID, temporal change and
diversity (metrics.py), the scoring loop (fidelity.py), the outputs (report.py) and side-by-side tables
(compare.py). `python evaluate.py` runs it (t2v/cli/evaluate.py)."""
