"""The `Solver`: trains a network by minibatch gradient descent, epoch after epoch.

One epoch is a pass over the training rows in a fresh random order (drawn from the
Solver's seeded Generator), in minibatches: forward, loss, backward, optimizer step,
and, when a learning-rate schedule is given, a schedule step per iteration or per
epoch. After each epoch the model is evaluated (in eval mode, without recording a
graph, in batches) on a fixed subsample of the training rows and on the validation
rows; the parameters with the best validation accuracy are kept, batch-norm running
statistics included, and restored at the end. Training stops early when validation
accuracy has not improved for ``early_stopping_patience`` epochs.

With ``checkpoint_dir`` a checkpoint is written after every epoch, atomically (a
temporary file renamed over the old one, so a crash never leaves half a file): model,
best model, optimizer and schedule state, the state of every random generator involved
(the Solver's and any dropout layer's), histories and counters. ``train(resume=True)``
continues from it; because everything that decides the rest of the run is restored,
the final model is the same, array for array, as that of an uninterrupted run with the
same seed.

A checkpoint is an ``.npz`` without pickled objects: arrays are members, everything else
(scalars, generator states, nesting of optimizer state) is JSON in string members.
"""

from __future__ import annotations

import json
import numbers
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chainrule._files import atomic_write
from chainrule._random import as_generator
from chainrule.autograd.arraymath import softmax

__all__ = ["CHECKPOINT_NAME", "Solver", "batches_per_epoch", "load_checkpoint"]

CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = "chainrule-checkpoint"
_FORMAT_VERSION = 1


def _as_generator(random_state) -> np.random.Generator:
    return as_generator(random_state)


def _check_positive_int(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------- state (de)serialisation


def _pack(obj, prefix: str, arrays: dict[str, np.ndarray]):
    """A JSON-able skeleton of a nested state; arrays go to `arrays` under `prefix...`."""
    if isinstance(obj, np.ndarray):
        key = f"{prefix}#{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise TypeError(f"state keys must be strings to be saved, got {k!r}")
        return {"__dict__": {k: _pack(v, prefix, arrays) for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_pack(v, prefix, arrays) for v in obj]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a value of type {type(obj).__name__} in a checkpoint")


def _unpack(skel, arrays):
    if isinstance(skel, dict):
        if "__array__" in skel:
            return np.array(arrays[skel["__array__"]])
        if "__dict__" in skel:
            return {k: _unpack(v, arrays) for k, v in skel["__dict__"].items()}
        if "__list__" in skel:
            return [_unpack(v, arrays) for v in skel["__list__"]]
        raise ValueError("damaged checkpoint: unknown entry in a saved state")
    return skel


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz so that `path` is always either the old file or the complete new one."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by `Solver` (a run folder or the .npz itself).

    Returns a dict with ``model``, ``best_model`` (dicts of arrays), ``optimizer``,
    ``schedule`` (nested states or None), ``generators`` (list of bit-generator states),
    ``history`` (dict of lists) and the counters (``epoch``, ``iteration``,
    ``best_val_acc``, ``best_epoch``, ``bad_epochs``, ``train_subset``).
    Raises ValueError when the file is not a checkpoint or is damaged.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / format errors of a truncated or foreign file
        raise ValueError(f"{path} is not a readable checkpoint ({e})") from None
    if "__checkpoint__" not in data or "meta_json" not in data:
        raise ValueError(f"{path} is not a chainrule checkpoint")
    head = json.loads(str(data["__checkpoint__"]))
    if head.get("format") != _FORMAT or head.get("version") != _FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format {head}")
    meta = json.loads(str(data["meta_json"]))
    out = {
        "model": {k[len("model/") :]: v for k, v in data.items() if k.startswith("model/")},
        "best_model": {k[len("best/") :]: v for k, v in data.items() if k.startswith("best/")},
        "optimizer": _unpack(meta["optimizer"], data),
        "schedule": _unpack(meta["schedule"], data),
        "generators": meta["generators"],
        "history": {
            k[len("history/") :]: v.tolist() for k, v in data.items() if k.startswith("history/")
        },
        "train_subset": data["train_subset"],
    }
    for k in ("epoch", "iteration", "best_val_acc", "best_epoch", "bad_epochs"):
        out[k] = meta[k]
    return out


# ---------------------------------------------------------------- the Solver


def _batch_slices(n: int, batch_size: int) -> list[slice]:
    """Minibatches of an epoch over n rows: full batches, plus the remainder when it is at
    least half a batch (a tiny last batch would give batch norm noisy statistics)."""
    stops = list(range(batch_size, n + 1, batch_size))
    if not stops or n - stops[-1] >= (batch_size + 1) // 2:
        stops.append(n)
    starts = [0] + stops[:-1]
    return [slice(a, b) for a, b in zip(starts, stops) if b > a]


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps per epoch of a `Solver` over n training rows (to size schedules)."""
    return len(_batch_slices(int(n), _check_positive_int("batch_size", batch_size)))


class Solver:
    """Minibatch training of a `chainrule.nn.Module` with validation and checkpoints.

    Parameters
    ----------
    model : chainrule.nn.Module
        Maps a Tensor of rows (B, D) to class scores (B, C). Its ``state_dict`` (batch-norm
        running statistics included) is what "the best parameters" means.
    optimizer : chainrule.optim optimizer
        Built over ``model.parameters()``; needs ``zero_grad()``, ``step()``,
        ``state_dict()``, ``load_state_dict(state)``.
    loss_fn : callable (scores Tensor (B, C), y int array (B,)) -> scalar Tensor
        Any regularization term is added inside it.
    X_train : float array (N, D); y_train : int array (N,), values in 0..C-1
    X_val, y_val : validation rows and labels, or None (then the model of the last epoch
        is kept and early stopping is off).
    batch_size : int
        Rows per minibatch; the last, smaller batch of an epoch is dropped when it is
        smaller than half a batch (it would give batch norm noisy statistics).
    epochs : int
    lr_schedule : object with ``step()`` (and ``state_dict``/``load_state_dict``), or None
        Stepped after each optimizer step (``schedule_per="iteration"``) or after each
        epoch (``schedule_per="epoch"``).
    augment : callable (X batch (B, D), rng Generator) -> (B, D), or None
        Applied to each training minibatch (a copy) before the forward pass.
    early_stopping_patience : int or None
        Stop when validation accuracy has not improved for this many epochs.
    checkpoint_dir : str or Path or None
        Folder for ``checkpoint.npz`` (written after every epoch).
    train_eval_size : int
        Size of the fixed random subsample of training rows used for train accuracy.
    eval_batch_size : int
        Rows per forward pass in evaluation.
    eval_views : callable (X batch (B, D)) -> list of (B, D) arrays, or None
        Other views of each row (e.g. mirrored images) whose predictions are averaged with
        the row's own in evaluation (test-time augmentation); the same evaluation picks
        the best epoch.
    random_state : int, Generator or None
        Shuffling, augmentation, the train subsample.
    verbose : bool
        Progress bar (tqdm) with loss and samples per second, and one line per epoch.

    After `train`, ``history`` holds ``loss`` (per iteration), ``epoch_loss`` (mean per
    epoch), ``train_acc``, ``val_acc``, ``lr`` and ``epoch_time`` (per epoch), and
    ``best_val_acc`` / ``best_epoch`` say which epoch's model was kept.
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
        checkpoint_dir=None,
        train_eval_size: int = 1000,
        eval_batch_size: int = 1000,
        eval_views: Callable | None = None,
        random_state=None,
        verbose: bool = True,
    ):
        self.model = model
        self.optimizer = optimizer
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn(scores, y) -> scalar Tensor")
        self.loss_fn = loss_fn
        self.X_train, self.y_train = self._check_data(X_train, y_train, "training")
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        if X_val is not None:
            self.X_val, self.y_val = self._check_data(X_val, y_val, "validation")
            if self.X_val.shape[1] != self.X_train.shape[1]:
                raise ValueError(
                    f"validation rows have {self.X_val.shape[1]} features, training rows "
                    f"{self.X_train.shape[1]}"
                )
        else:
            self.X_val = self.y_val = None
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.epochs = _check_positive_int("epochs", epochs)
        if schedule_per not in ("iteration", "epoch"):
            raise ValueError(f'schedule_per must be "iteration" or "epoch", got {schedule_per!r}')
        if lr_schedule is not None and not hasattr(lr_schedule, "step"):
            raise TypeError("lr_schedule must have a step() method (a chainrule.optim schedule)")
        self.lr_schedule = lr_schedule
        self.schedule_per = schedule_per
        if augment is not None and not callable(augment):
            raise TypeError("augment must be a callable (X_batch, rng) -> X_batch, or None")
        self.augment = augment
        self.early_stopping_patience = _check_positive_int(
            "early_stopping_patience", early_stopping_patience, allow_none=True
        )
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.train_eval_size = _check_positive_int("train_eval_size", train_eval_size)
        self.eval_batch_size = _check_positive_int("eval_batch_size", eval_batch_size)
        if eval_views is not None and not callable(eval_views):
            raise TypeError("eval_views must be a callable X_batch -> list of views, or None")
        self.eval_views = eval_views
        self.rng = _as_generator(random_state)
        self.verbose = bool(verbose)

        n = self.X_train.shape[0]
        k = min(self.train_eval_size, n)
        self.train_subset = (
            np.sort(self.rng.choice(n, size=k, replace=False)) if k < n else (np.arange(n))
        )
        self._reset_progress()

    # ------------------------------------------------------------ inputs
    @staticmethod
    def _check_data(X, y, what: str) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2:
            raise ValueError(f"{what} X must have shape (N, D), got {X.shape}")
        if X.dtype.kind != "f":
            raise TypeError(f"{what} X must be floating point, got dtype {X.dtype}")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"{what} y must have shape ({X.shape[0]},), got {y.shape}")
        if y.dtype.kind not in "iu":
            raise TypeError(f"{what} y must hold integer labels, got dtype {y.dtype}")
        if X.shape[0] == 0:
            raise ValueError(f"{what} data is empty")
        return X, y

    def _reset_progress(self) -> None:
        self.epoch = 0
        self.iteration = 0
        self.best_val_acc = -1.0
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state = None
        self.history = {
            "loss": [],
            "epoch_loss": [],
            "train_acc": [],
            "val_acc": [],
            "lr": [],
            "epoch_time": [],
        }

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

    def _diverged(self, what: str) -> str:
        return (
            f"{what} at iteration {self.iteration + 1} (epoch {self.epoch + 1}): training "
            "diverged; lower the learning rate, or check the inputs for NaN"
        )

    def _train_step(self, X_batch, y_batch) -> float:
        from chainrule.autograd.engine import Tensor

        if self.augment is not None:
            X_batch = self.augment(X_batch, self.rng)
        self.optimizer.zero_grad()
        scores = self.model(Tensor(X_batch))
        # Scores are (B, C): checking them is cheap and names the real problem.
        if not np.isfinite(scores.data).all():
            raise FloatingPointError(self._diverged("the class scores became NaN or infinite"))
        loss = self.loss_fn(scores, y_batch)
        value = float(loss.item())
        if not np.isfinite(value):
            raise FloatingPointError(self._diverged(f"the training loss became {value}"))
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
        from it; without a checkpoint there, it starts from scratch. At the end the best
        model on validation is loaded into ``self.model``.
        """
        if resume:
            if self.checkpoint_dir is None:
                raise ValueError("resume=True needs a checkpoint_dir")
            if (self.checkpoint_dir / CHECKPOINT_NAME).exists():
                self.load(self.checkpoint_dir)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        n = self.X_train.shape[0]
        stopped = self._should_stop()
        while self.epoch < self.epochs and not stopped:
            self._run_epoch(n)
            stopped = self._should_stop()
            if self.checkpoint_dir is not None:
                self.save_checkpoint()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
        return self

    def _should_stop(self) -> bool:
        p = self.early_stopping_patience
        return p is not None and self.X_val is not None and self.bad_epochs >= p

    def _run_epoch(self, n: int) -> None:
        t0 = time.perf_counter()
        order = self.rng.permutation(n)
        batches = _batch_slices(n, self.batch_size)
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=n,
                desc=f"epoch {self.epoch + 1}/{self.epochs}",
                unit="img",
                leave=False,
                dynamic_ncols=True,
            )
        losses = []
        seen = 0
        try:
            for k, sl in enumerate(batches):
                idx = order[sl]
                losses.append(self._train_step(self.X_train[idx], self.y_train[idx]))
                seen += len(idx)
                if bar is not None:
                    bar.update(len(idx))
                    if k % 10 == 0 or k == len(batches) - 1:
                        rate = seen / max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{rate:.0f}")
        finally:
            if bar is not None:
                bar.close()
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
        else:
            val_acc = None
        self.history["epoch_time"].append(time.perf_counter() - t0)
        if self.verbose:
            msg = (
                f"epoch {self.epoch}/{self.epochs}  loss {self.history['epoch_loss'][-1]:.4f}"
                f"  train acc {train_acc:.4f}"
            )
            if val_acc is not None:
                msg += f"  val acc {val_acc:.4f}"
            msg += f"  {seen / train_time:.0f} img/s  {self.history['epoch_time'][-1]:.1f}s"
            print(msg, flush=True)

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path=None) -> Path:
        """Write the whole training state to ``checkpoint_dir/checkpoint.npz`` (or `path`)."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("no checkpoint_dir given")
            path = self.checkpoint_dir / CHECKPOINT_NAME
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for k, v in self.model.state_dict().items():
            arrays[f"model/{k}"] = v
        if self.best_state is not None:
            for k, v in self.best_state.items():
                arrays[f"best/{k}"] = v
        for k, v in self.history.items():
            arrays[f"history/{k}"] = np.asarray(v, dtype=np.float64)
        arrays["train_subset"] = self.train_subset
        meta = {
            "optimizer": _pack(self.optimizer.state_dict(), "optim/", arrays),
            "schedule": (
                None
                if self.lr_schedule is None
                else _pack(self.lr_schedule.state_dict(), "sched/", arrays)
            ),
            "generators": [g.bit_generator.state for g in self._generators()],
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }
        arrays["meta_json"] = np.array(json.dumps(meta))
        arrays["__checkpoint__"] = np.array(
            json.dumps({"format": _FORMAT, "version": _FORMAT_VERSION})
        )
        _atomic_savez(path, arrays)
        return path

    def load(self, path) -> None:
        """Restore the training state saved by `save_checkpoint` (a folder or a file)."""
        ck = load_checkpoint(path)
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
        for k in ("epoch", "iteration", "best_val_acc", "best_epoch", "bad_epochs"):
            setattr(self, k, ck[k])
