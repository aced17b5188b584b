"""Training a corrector: ``fit`` (:mod:`.trainer`) and what it returns (:mod:`.history`).

One module per role: :mod:`.arguments` (the boundary's checks), :mod:`.schedule` (the window
length of each epoch), :mod:`.targets` (the classical steps through ``solve``, samples, batches),
:mod:`.loop` (the epochs), :mod:`.checkpoint` (write / resume), :mod:`.distributed` (DDP) and
:mod:`.check` (the end-of-fit check).
"""

from .check_ratio import calibrate_check, set_check_ratio
from .domain import record_domain
from .history import FitCheckWarning, FitHistory, NonFiniteLossError
from .trainer import fit

__all__ = ["fit", "record_domain", "calibrate_check", "set_check_ratio", "FitHistory", "NonFiniteLossError", "FitCheckWarning"]
