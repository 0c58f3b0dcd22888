"""What a trial leaves in a run folder: the model file, the plots and the pictures of
the images it got wrong."""

from __future__ import annotations

import numpy as np

from chainrule.experiment.data import TrialData
from chainrule.experiment.records import Result
from chainrule.models.spec import FitSummary, ModelSpec, Plot

__all__ = ["draw_plots", "plots_of", "record_mistakes", "save"]


def save(output, spec: ModelSpec, model, data: TrialData, result: Result) -> None:
    """Write the model, its preprocessing and class names to ``output.model_file``."""
    from chainrule.models.io import save_model

    extra = {**output.extra, "val_accuracy": result.val_accuracy}
    if data.has("test"):
        extra["test_accuracy"] = result.test_accuracy
    path = output.folder.file(output.model_file)
    save_model(path, model, data.preprocessor(spec.input_layout), data.classes, extra)
    result.model_file = path.name


def plots_of(spec: ModelSpec, model, data: TrialData, result: Result) -> list[Plot]:
    """Every plot of a trial: the family's own, the search, the loss curve, validation
    accuracy against training minutes (for models trained in epochs with a validation
    split), the confusion matrix (on the test split, else on the validation split)."""
    fitted = FitSummary(data.image_shape, data.classes, result.tuning)
    plots = list(spec.plots(model, fitted))
    search = result.tuning.get("search")
    if search:
        keys = list(search["grid"])
        if len(keys) >= 2:
            kwargs = {"x": keys[0], "y": keys[1]}
            plots.append(Plot("plot_search_results", "search.png", (search["results"],), kwargs))
        else:
            plots.append(Plot("plot_search_curve", "search.png", (search["results"], keys[0])))
    if result.history and len(result.history.get("loss", [])) > 0:
        plots.append(Plot("plot_loss_curve", "loss.png", (result.history,)))
        timed = len(result.history.get("epoch_time") or [])
        if timed and timed == len(result.history.get("val_acc") or []):
            plots.append(Plot("plot_accuracy_vs_time", "accuracy_time.png", (result.history,)))
    which = "test" if result.confusion_matrix_test is not None else "validation"
    cm = result.confusion_matrix_test if which == "test" else result.confusion_matrix_val
    if cm is not None:
        title = f"{spec.name}, {which}"
        args = (np.asarray(cm), data.classes)
        plots.append(Plot("plot_confusion_matrix", "confusion.png", args, {"title": title}))
    return plots


def draw_plots(output, spec: ModelSpec, model, data: TrialData, result: Result) -> None:
    """Draw the trial's plots into the run folder; a plot that fails is recorded in
    ``result.plot_errors``, never lost with the run."""
    from chainrule.report import plots as library

    folder = output.folder
    start = len(folder.plots)
    errors_before = dict(folder.plot_errors)
    try:
        wanted = plots_of(spec, model, data, result)
    except Exception as e:  # a broken plot description must not lose the trained model
        folder.plot_errors[f"{output.prefix}plots"] = f"{type(e).__name__}: {e}"
        wanted = []
    for plot in wanted:
        name = plot.file
        if output.prefix and not name.startswith(output.prefix):
            name = output.prefix + name
        function = getattr(library, plot.function, None)
        if function is None:
            folder.plot_errors[name] = f"no plot function {plot.function!r} in chainrule.report"
            continue
        folder.plot(function, name, *plot.args, **plot.kwargs)
    result.plots = folder.plots[start:]
    result.plot_errors = {k: v for k, v in folder.plot_errors.items() if k not in errors_before}


def record_mistakes(output, spec: ModelSpec, model, data: TrialData, result: Result, predictions,
                    seed: int = 0) -> None:  # fmt: skip
    """The images of the validation split (else the test split) the model got wrong, into
    ``result.mistakes`` and the contact sheet ``<prefix>mistakes.png``; a failure is
    recorded in ``result.plot_errors``, never lost with the run."""
    from chainrule.report.examples import mistakes_record, predicted_probability

    split = next((s for s in ("val", "test") if s in predictions), None)
    if split is None:
        return
    name = f"{output.prefix}mistakes.png"
    pred = predictions[split]
    inputs = data.inputs(spec.input_layout, split)

    def probability(rows):
        proba = model.predict_proba(inputs[rows])
        return predicted_probability(proba, pred[rows], getattr(model, "classes_", None))

    try:
        result.mistakes = mistakes_record(
            output.folder.path, name, data.images(split), data.labels(split), pred,
            data.classes, split=split, files=data.files(split),
            probability=probability if hasattr(model, "predict_proba") else None, seed=seed,
        )  # fmt: skip
    except Exception as e:  # the page loses a picture, the run keeps its model
        message = f"{type(e).__name__}: {e}"
        output.folder.plot_errors[name] = message
        result.plot_errors[name] = message
