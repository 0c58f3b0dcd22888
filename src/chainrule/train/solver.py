"""The `Solver`: trains a model by minibatch gradient descent, epoch after epoch.

Every estimator that learns by gradient descent (the linear classifiers, the fully
connected networks) trains here. One epoch is a pass over the training rows in a fresh
random order (drawn from the Solver's seeded Generator), in minibatches: forward, loss,
backward, optimizer step, and, when a learning-rate schedule is given, a schedule step
per iteration or per epoch. After each epoch the model is evaluated (in eval mode,
without recording a graph, in batches) on a fixed subsample of `TRAIN_ACC_SAMPLES`
training rows and on the validation rows; the parameters with the best validation
accuracy are kept, batch-norm running statistics included, and restored at the end
(unless ``restore_best=False``). Training stops early when validation accuracy has not
improved for ``early_stopping_patience`` epochs.

With ``checkpoint_dir`` a checkpoint (`chainrule.train.checkpoint`) is written after
every epoch: model, best model, optimizer and schedule state, the state of every random
generator involved (the Solver's and any dropout layer's), histories, counters, and the
run's ``settings``. ``train(resume=True)`` continues from it after checking that it
records the same settings; because everything that decides the rest of the run is
restored, the final model is the same, array for array, as that of an uninterrupted run
with the same seed.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chainrule._random import as_generator
from chainrule.autograd.arraymath import softmax
from chainrule.train.checkpoint import (
    CHECKPOINT_NAME,
    COUNTERS,
    check_settings,
    load_checkpoint,
    normalize_settings,
    save_checkpoint,
)

__all__ = [
    "TRAIN_ACC_SAMPLES",
    "Solver",
    "TrainingDivergedError",
    "batches_per_epoch",
]

# Training accuracy (per epoch in the Solver, and the training accuracy a run reports)
# is measured on a fixed random subsample of this many training rows, all rows when
# there are fewer. Its standard error, at most 1.6 points, is small beside the gaps
# between training and validation accuracy that it is there to show; the forward pass
# over it costs under 1% of an epoch of the 3072-1024-1024-10 network on CIFAR-10.
TRAIN_ACC_SAMPLES = 1000


class TrainingDivergedError(FloatingPointError, ValueError):
    """The loss or the class scores stopped being finite: lower the learning rate."""


def _check_positive_int(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _batch_slices(n: int, batch_size: int) -> list[slice]:
    """Minibatches of an epoch over n rows: full batches, plus the remainder when it is at
    least half a batch (a tiny last batch would give batch norm noisy statistics)."""
    stops = list(range(batch_size, n + 1, batch_size))
    if not stops or n - stops[-1] >= (batch_size + 1) // 2:
        stops.append(n)
    starts = [0] + stops[:-1]
    return [slice(a, b) for a, b in zip(starts, stops) if b > a]


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps per epoch of a `Solver` over n training rows."""
    return len(_batch_slices(int(n), _check_positive_int("batch_size", batch_size)))


def _check_rows(X, y, what: str, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """X (N, ...) finite floats (rows (N, D), images (N, H, W, C), any sample shape;
    cast to `dtype` when given) and y (N,) integer labels; `what` is "X_train" or
    "X_val", for the messages."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim < 2:
        raise ValueError(f"{what} must have shape (N, D) or (N, H, W, C), got {X.shape}")
    # Validation rows are cast to the training rows' dtype: integers are accepted there.
    if X.dtype.kind != "f" and not (dtype is not None and X.dtype.kind in "iu"):
        raise TypeError(f"{what} must be floating point, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{what} contains NaN or infinity")
    label = "y" + what[1:]
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{label} must have shape ({X.shape[0]},), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{label} must hold integer labels, got dtype {y.dtype}")
    return X, y


class Solver:
    """Minibatch training of a `chainrule.nn.Module` with validation and checkpoints.

    Parameters
    ----------
    model : chainrule.nn.Module
        Maps a Tensor of samples (B, ...) to class scores (B, C). Its ``state_dict`` (batch-norm
        running statistics included) is what "the best parameters" means.
    optimizer : chainrule.optim optimizer
        Built over ``model.parameters()``; needs ``zero_grad()``, ``step()``,
        ``state_dict()``, ``load_state_dict(state)``.
    loss_fn : callable (scores Tensor (B, C), y int array (B,)) -> scalar Tensor
        Any regularization term is added inside it.
    X_train : float array of N samples, rows (N, D) or images (N, H, W, C) (what the
        model reads); y_train : int array (N,), values in 0..C-1
    X_val, y_val : validation rows (M, D) (cast to the training rows' dtype) and labels
        (M,), or None (then the model of the last epoch is kept and early stopping is
        off). A label outside 0..C-1 (a class the model cannot predict) counts as wrong.
    batch_size : int
        Rows per minibatch; the last, smaller batch of an epoch is dropped when it is
        smaller than half a batch (it would give batch norm noisy statistics).
    epochs : int
    lr_schedule : None, a schedule, or a factory ``(optimizer, total_steps) -> schedule``
        A factory is called once with the number of schedule steps of the whole run
        (``epochs * steps_per_epoch`` or ``epochs``, see `schedule_per`) and may return
        None (constant rate). A schedule (``step()``, ``state_dict``,
        ``load_state_dict``) built by the caller is used as is.
    schedule_per : "iteration" or "epoch"
        Step the schedule after each optimizer step, or after each epoch.
    augment : callable (X batch (B, ...), rng Generator) -> a batch of that shape, or None
        Applied to each training minibatch (a copy) before the forward pass. One with
        ``uses_indices = True`` (such as `chainrule.data.augment.CropFlip`) is called
        with the keywords ``indices`` (the samples' positions in X_train) and ``epoch``
        (0-based) too.
    early_stopping_patience : int or None
        Stop when validation accuracy has not improved for this many epochs.
    restore_best : bool
        Load the parameters of the best validation epoch at the end (default); False
        keeps those of the last epoch.
    checkpoint_dir : str or Path or None
        Folder for ``checkpoint.npz`` (written after every epoch).
    settings : dict of JSON values, or None
        What identifies the run (hyperparameters, data shape, seed...): recorded in every
        checkpoint; ``train(resume=True)`` refuses a checkpoint that records others.
    train_eval_size : int
        Size of the fixed random subsample of training rows used for train accuracy.
    eval_batch_size : int
        Rows per forward pass in evaluation.
    eval_views : callable (X batch (B, ...)) -> list of arrays of that shape, or None
        Other views of each row (e.g. mirrored images) whose predictions are averaged with
        the row's own in evaluation (test-time augmentation); the same evaluation picks
        the best epoch.
    random_state : int, Generator or None
        Shuffling, augmentation, the train subsample.
    verbose : bool
        Show progress.
    progress : "epoch" or "run"
        With `verbose`: "epoch" shows a progress bar per epoch (loss, samples per second)
        and prints one line per epoch; "run" shows one bar for the whole run with the
        loss and accuracies of the last epoch, on a terminal only.

    Notes
    -----
    After `train`, ``history`` holds ``loss`` (per iteration), ``epoch_loss`` (mean per
    epoch), ``train_acc``, ``val_acc``, ``lr`` and ``epoch_time`` (per epoch), and
    ``best_val_acc`` / ``best_epoch`` say which epoch's model was kept. A loss or class
    scores that stop being finite raise `TrainingDivergedError`.
    """

    def __init__(
        self,
        model,
        optimizer,
        loss_fn: Callable,
        X_train,
        y_train,
        X_val=None,
        y_val=None,
        *,
        batch_size: int = 200,
        epochs: int = 10,
        lr_schedule=None,
        schedule_per: str = "iteration",
        augment: Callable | None = None,
        early_stopping_patience: int | None = None,
        restore_best: bool = True,
        checkpoint_dir=None,
        settings: dict | None = None,
        train_eval_size: int = TRAIN_ACC_SAMPLES,
        eval_batch_size: int = 1000,
        eval_views: Callable | None = None,
        random_state=None,
        verbose: bool = True,
        progress: str = "epoch",
    ):
        self.model = model
        self.optimizer = optimizer
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn(scores, y) -> scalar Tensor")
        self.loss_fn = loss_fn
        self._set_data(X_train, y_train, X_val, y_val)
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.epochs = _check_positive_int("epochs", epochs)
        if schedule_per not in ("iteration", "epoch"):
            raise ValueError(f'schedule_per must be "iteration" or "epoch", got {schedule_per!r}')
        self.schedule_per = schedule_per
        self.lr_schedule = self._build_schedule(lr_schedule)
        for name, f in (("augment", augment), ("eval_views", eval_views)):
            if f is not None and not callable(f):
                raise TypeError(f"{name} must be a callable or None, got {type(f).__name__}")
        self.augment = augment
        self.eval_views = eval_views
        self.early_stopping_patience = _check_positive_int(
            "early_stopping_patience", early_stopping_patience, allow_none=True
        )
        self.restore_best = bool(restore_best)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.settings = normalize_settings(settings)
        self.train_eval_size = _check_positive_int("train_eval_size", train_eval_size)
        self.eval_batch_size = _check_positive_int("eval_batch_size", eval_batch_size)
        self.rng = as_generator(random_state)
        if progress not in ("epoch", "run"):
            raise ValueError(f'progress must be "epoch" or "run", got {progress!r}')
        self.verbose = bool(verbose)
        self.progress = progress

        n = self.X_train.shape[0]
        k = min(self.train_eval_size, n)
        self.train_subset = (
            np.sort(self.rng.choice(n, size=k, replace=False)) if k < n else np.arange(n)
        )
        self._reset_progress()

    # ------------------------------------------------------------ inputs
    def _set_data(self, X_train, y_train, X_val, y_val) -> None:
        self.X_train, self.y_train = _check_rows(X_train, y_train, "X_train")
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        if X_val is None:
            self.X_val = self.y_val = None
            return
        self.X_val, self.y_val = _check_rows(X_val, y_val, "X_val", dtype=self.X_train.dtype)
        if self.X_val.shape[1:] != self.X_train.shape[1:]:
            if self.X_val.ndim == 2 and self.X_train.ndim == 2:
                raise ValueError(
                    f"X_val has {self.X_val.shape[1]} features, but X_train has "
                    f"{self.X_train.shape[1]}"
                )
            raise ValueError(
                f"X_val has samples of shape {self.X_val.shape[1:]}, but X_train has "
                f"{self.X_train.shape[1:]}"
            )

    def _build_schedule(self, lr_schedule):
        if lr_schedule is None:
            return None
        if not isinstance(lr_schedule, type) and hasattr(lr_schedule, "step"):
            return lr_schedule
        if not callable(lr_schedule):
            raise TypeError(
                "lr_schedule must be a schedule (with a step() method) or a factory "
                "(optimizer, total_steps) -> schedule"
            )
        total = self.epochs * (self.steps_per_epoch if self.schedule_per == "iteration" else 1)
        schedule = lr_schedule(self.optimizer, total)
        if schedule is not None and not hasattr(schedule, "step"):
            raise TypeError(
                f"the lr_schedule factory returned {type(schedule).__name__}, not a schedule"
            )
        return schedule

    def _reset_progress(self) -> None:
        self.epoch = 0
        self.iteration = 0
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state = None
        keys = ("loss", "epoch_loss", "train_acc", "val_acc", "lr", "epoch_time")
        self.history = {k: [] for k in keys}

    # ------------------------------------------------------------ generators
    def _generators(self) -> list[np.random.Generator]:
        """The Solver's generator, then every other generator the model's layers draw from
        (dropout masks), each once: all of them must be restored for an exact resume."""
        gens = [self.rng]
        seen = {id(self.rng)}
        modules = self.model.modules() if hasattr(self.model, "modules") else []
        for m in modules:
            for v in vars(m).values():
                if isinstance(v, np.random.Generator) and id(v) not in seen:
                    seen.add(id(v))
                    gens.append(v)
        return gens

    # ------------------------------------------------------------ evaluation
    def predict_scores(self, X) -> np.ndarray:
        """Class scores (N, C) of rows X (N, D), in eval mode, without a graph, in batches.

        With ``eval_views``, the scores are the summed softmax probabilities of each row
        and its views (e.g. its mirror image).
        """
        from chainrule.autograd.engine import Tensor, no_grad

        was_training = getattr(self.model, "training", False)
        self.model.eval()
        try:
            out = []
            with no_grad():
                for i in range(0, X.shape[0], self.eval_batch_size):
                    xb = X[i : i + self.eval_batch_size]
                    scores = self.model(Tensor(xb)).data
                    if self.eval_views is not None:
                        # Average the class probabilities over the views of each row.
                        scores = softmax(scores)
                        for view in self.eval_views(xb):
                            scores += softmax(self.model(Tensor(view)).data)
                    out.append(scores)
        finally:
            self.model.train(was_training)
        return np.concatenate(out, axis=0)

    def check_accuracy(self, X, y) -> float:
        """Fraction of rows of X whose highest score is the label in y."""
        return float(np.mean(self.predict_scores(X).argmax(axis=1) == y))

    # ------------------------------------------------------------ training
    def _current_lr(self):
        lr = getattr(self.optimizer, "lr", None)
        return float(lr) if isinstance(lr, numbers.Real) else float("nan")

    def _diverged(self, what: str) -> TrainingDivergedError:
        return TrainingDivergedError(
            f"{what} at iteration {self.iteration + 1} (epoch {self.epoch + 1}): training "
            "diverged; lower the learning rate, or check the inputs for NaN"
        )

    def _train_step(self, X_batch, y_batch, indices=None) -> float:
        from chainrule.autograd.engine import Tensor

        if getattr(self.augment, "uses_indices", False):
            X_batch = self.augment(X_batch, self.rng, indices=indices, epoch=self.epoch)
        elif self.augment is not None:
            X_batch = self.augment(X_batch, self.rng)
        self.optimizer.zero_grad()
        scores = self.model(Tensor(X_batch))
        # Scores are (B, C): checking them is cheap and names the real problem.
        if not np.isfinite(scores.data).all():
            raise self._diverged("the class scores became NaN or infinite")
        loss = self.loss_fn(scores, y_batch)
        value = float(loss.item())
        if not np.isfinite(value):
            raise self._diverged(f"the training loss became {value}")
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        if self.lr_schedule is not None and self.schedule_per == "iteration":
            self.lr_schedule.step()
        return value

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches (optimizer steps) per epoch."""
        return len(_batch_slices(self.X_train.shape[0], self.batch_size))

    def train(self, resume: bool = False) -> Solver:
        """Run the remaining epochs (all of them, or those after the checkpoint).

        With ``resume=True`` and a checkpoint in ``checkpoint_dir``, training continues
        from it (after checking that it records this Solver's ``settings``); without a
        checkpoint there, it starts from scratch. At the end the best model on
        validation is loaded into ``self.model`` (unless ``restore_best=False``).
        """
        if resume:
            if self.checkpoint_dir is None:
                raise ValueError("resume=True needs a checkpoint_dir")
            if (self.checkpoint_dir / CHECKPOINT_NAME).exists():
                self.load(self.checkpoint_dir)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        run_bar = self._run_bar()
        # Overflow shows up as non-finite scores or loss, reported with advice instead of
        # as NumPy warnings.
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                while self.epoch < self.epochs and not self._should_stop():
                    self._run_epoch(run_bar)
                    if self.checkpoint_dir is not None:
                        self.save_checkpoint()
        finally:
            if run_bar is not None:
                run_bar.close()
        if self.best_state is not None and self.restore_best:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
        return self

    def _should_stop(self) -> bool:
        p = self.early_stopping_patience
        return p is not None and self.X_val is not None and self.bad_epochs >= p

    def _run_bar(self):
        """The progress bar of the whole run (``progress="run"``), or None."""
        if not self.verbose or self.progress != "run":
            return None
        from tqdm.auto import tqdm

        remaining = (self.epochs - self.epoch) * self.steps_per_epoch
        # disable=None: shown on a terminal only.
        return tqdm(total=remaining, desc="training", unit="it", disable=None)

    def _epoch_bar(self, n: int):
        if not self.verbose or self.progress != "epoch":
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=n,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            unit="img",
            leave=False,
            dynamic_ncols=True,
            smoothing=0,  # the epoch's average speed, as its summary line gives it
        )

    def _train_epoch(self, run_bar) -> tuple[list[float], int]:
        """One pass over the shuffled training rows; returns (losses, rows seen)."""
        n = self.X_train.shape[0]
        order = self.rng.permutation(n)
        batches = _batch_slices(n, self.batch_size)
        bar = self._epoch_bar(n)
        losses = []
        seen = 0
        try:
            for k, sl in enumerate(batches):
                idx = order[sl]
                losses.append(self._train_step(self.X_train[idx], self.y_train[idx], idx))
                seen += len(idx)
                if run_bar is not None:
                    run_bar.update(1)
                if bar is not None:
                    bar.update(len(idx))
                    if k % 10 == 0 or k == len(batches) - 1:
                        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        finally:
            if bar is not None:
                bar.close()
        return losses, seen

    def _run_epoch(self, run_bar=None) -> None:
        t0 = time.perf_counter()
        losses, seen = self._train_epoch(run_bar)
        self.history["lr"].append(self._current_lr())
        if self.lr_schedule is not None and self.schedule_per == "epoch":
            self.lr_schedule.step()
        train_time = time.perf_counter() - t0
        self.epoch += 1
        self.history["loss"].extend(losses)
        self.history["epoch_loss"].append(float(np.mean(losses)))
        sub = self.train_subset
        train_acc = self.check_accuracy(self.X_train[sub], self.y_train[sub])
        self.history["train_acc"].append(train_acc)
        val_acc = None
        if self.X_val is not None:
            val_acc = self.check_accuracy(self.X_val, self.y_val)
            self.history["val_acc"].append(val_acc)
            if val_acc > self.best_val_acc:
                self.best_val_acc = val_acc
                self.best_epoch = self.epoch
                self.best_state = self.model.state_dict()
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
        self.history["epoch_time"].append(time.perf_counter() - t0)
        self._report_epoch(run_bar, train_acc, val_acc, seen / max(train_time, 1e-9))

    def _report_epoch(self, run_bar, train_acc, val_acc, rate) -> None:
        loss = self.history["epoch_loss"][-1]
        if run_bar is not None:
            accs = {"train": f"{train_acc:.3f}"}
            if val_acc is not None:
                accs["val"] = f"{val_acc:.3f}"
            run_bar.set_postfix(loss=f"{loss:.4f}", **accs)
        if not self.verbose or self.progress != "epoch":
            return
        msg = f"epoch {self.epoch}/{self.epochs}  loss {loss:.4f}  train acc {train_acc:.4f}"
        if val_acc is not None:
            msg += f"  val acc {val_acc:.4f}"
        msg += f"  {rate:.0f} img/s  {self.history['epoch_time'][-1]:.1f}s"
        print(msg, flush=True)

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path=None) -> Path:
        """Write the whole training state to ``checkpoint_dir/checkpoint.npz`` (or `path`)."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("no checkpoint_dir given")
            path = self.checkpoint_dir / CHECKPOINT_NAME
        state = {
            "model": self.model.state_dict(),
            "best_model": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "schedule": None if self.lr_schedule is None else self.lr_schedule.state_dict(),
            "generators": [g.bit_generator.state for g in self._generators()],
            "history": self.history,
            "train_subset": self.train_subset,
            "settings": self.settings,
            **{k: getattr(self, k) for k in COUNTERS},
        }
        return save_checkpoint(path, state)

    def load(self, path) -> None:
        """Restore the training state saved by `save_checkpoint` (a folder or a file).

        Refuses (ValueError) a checkpoint that records other settings than this Solver's,
        or that was written for another model or a longer run.
        """
        ck = load_checkpoint(path)
        check_settings(ck["settings"], self.settings, where=f"the checkpoint in {path}")
        gens = self._generators()
        if len(ck["generators"]) != len(gens):
            raise ValueError(
                f"the checkpoint holds {len(ck['generators'])} random generators, this "
                f"model and Solver use {len(gens)}: it was written for another model"
            )
        if ck["epoch"] > self.epochs:
            raise ValueError(
                f"the checkpoint is after epoch {ck['epoch']}, beyond epochs={self.epochs}"
            )
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.lr_schedule is not None:
            if ck["schedule"] is None:
                raise ValueError("the checkpoint has no learning-rate schedule state")
            self.lr_schedule.load_state_dict(ck["schedule"])
        for g, state in zip(gens, ck["generators"]):
            g.bit_generator.state = state
        self.best_state = ck["best_model"] or None
        self.history = {k: list(v) for k, v in ck["history"].items()}
        self.train_subset = ck["train_subset"]
        for k in COUNTERS:
            setattr(self, k, ck[k])
