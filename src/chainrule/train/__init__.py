"""Training: the `Solver` (epochs, minibatches, best-on-validation, resume), checkpoint
files, and hyperparameter search on a validation split."""

from chainrule.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from chainrule.train.search import (
    LogUniform,
    SearchResult,
    format_results,
    grid_search,
    print_results,
    random_search,
)
from chainrule.train.solver import (
    TRAIN_ACC_SAMPLES,
    Solver,
    TrainingDivergedError,
    batches_per_epoch,
)

__all__ = [
    "CHECKPOINT_NAME",
    "TRAIN_ACC_SAMPLES",
    "LogUniform",
    "SearchResult",
    "Solver",
    "TrainingDivergedError",
    "batches_per_epoch",
    "format_results",
    "grid_search",
    "load_checkpoint",
    "print_results",
    "random_search",
    "save_checkpoint",
]
