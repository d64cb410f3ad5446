"""strsr-eval: the paper's metrics (pyiqa, offline) and the periodic-artifact score over result folders.

pyiqa is imported lazily (it is the optional `eval` extra): importing this package needs only strsr's core.
"""

from strsr.evaluation.pairing import Pairing, PairingError, pair_folders
from strsr.evaluation.weights import MissingWeightsError, required_files, resolve_weights

__all__ = ["MissingWeightsError", "Pairing", "PairingError", "pair_folders", "required_files", "resolve_weights"]
