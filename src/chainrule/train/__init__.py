"""Training: the `Solver` (epochs, minibatches, best-on-validation, checkpoints, resume)
and hyperparameter search on a validation split."""

from chainrule.train.search import (
    LogUniform,
    SearchResult,
    format_results,
    grid_search,
    print_results,
    random_search,
)
from chainrule.train.solver import CHECKPOINT_NAME, Solver, batches_per_epoch, load_checkpoint

__all__ = [
    "CHECKPOINT_NAME",
    "LogUniform",
    "SearchResult",
    "Solver",
    "batches_per_epoch",
    "format_results",
    "grid_search",
    "load_checkpoint",
    "print_results",
    "random_search",
]
