"""The experiment layer: what a run of a model does, between the command line and the models.

A trial is a settings record in (`Trial`: model name, given hyperparameters, search or
not, seed) and a result record out (`Result`: accuracies, times, confusion matrices,
histories, how the settings were chosen), both plain data that pickle and convert to
JSON. :func:`run_trial` reads the model's spec (``chainrule.models.spec``) and runs
defaults for the data -> given values -> the family's own tuning or a grid search -> fit
(or keep the model the search already fitted) -> evaluate -> save -> plot.

`TrialData` holds the splits and their preprocessing, in the input layout each model
wants. `open_run`, `train_run`, `recording` and `comparison_record` keep the run folders
of ``chainrule train`` and ``chainrule compare`` (one run per folder, locked while it
runs, its status recorded). Nothing here knows a model by name.
"""

from chainrule.experiment.data import TrialData
from chainrule.experiment.records import Result, Trial
from chainrule.experiment.runs import (
    compare_output,
    comparison_record,
    interrupted_run,
    open_run,
    recording,
    resumable_models,
    train_run,
)
from chainrule.experiment.trial import (
    ExperimentError,
    Output,
    Settings,
    check_trial,
    choose_settings,
    finish,
    run_trial,
)

__all__ = [
    "ExperimentError",
    "Output",
    "Result",
    "Settings",
    "Trial",
    "TrialData",
    "check_trial",
    "choose_settings",
    "compare_output",
    "comparison_record",
    "finish",
    "interrupted_run",
    "open_run",
    "recording",
    "resumable_models",
    "run_trial",
    "train_run",
]
