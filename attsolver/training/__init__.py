"""Training a corrector: ``fit`` (:mod:`.trainer`) and what it returns (:mod:`.history`).

One module per role: :mod:`.arguments` (the boundary's checks), :mod:`.schedule` (the window
length of each epoch), :mod:`.targets` (the classical steps through ``solve``, samples, batches),
:mod:`.loop` (the epochs), :mod:`.checkpoint` (write / resume), :mod:`.distributed` (DDP) and
:mod:`.check` (the end-of-fit check), :mod:`.score_stopping` (early stopping on a score of the
model, an ``on_epoch_end`` callback).
"""

from .check_ratio import calibrate_check, set_check_ratio
from .domain import record_domain
from .history import FitCheckWarning, FitHistory, NonFiniteLossError
from .score_stopping import ScoreStopping
from .trainer import fit

__all__ = ["fit", "ScoreStopping", "record_domain", "calibrate_check", "set_check_ratio", "FitHistory", "NonFiniteLossError", "FitCheckWarning"]
