"""strsr-eval: the paper's metrics (pyiqa, offline) and the periodic-artifact score over result folders.

pyiqa is imported lazily (it is the optional `eval` extra), and importing this package imports nothing heavy.
"""
