"""The `chainrule` command line: parses arguments, calls the experiment layer
(``chainrule.experiment``) or loads a model file, and shows the results.

Each subcommand lives in its own module of this package and provides two functions:
``add_arguments(parser)`` fills its argparse parser, and ``run(args) -> int`` does the
work and returns the exit status. Modules are imported only when their command runs,
so ``chainrule --help`` stays fast.

What the user can get wrong is reported in one line on stderr with exit status 2: a
:class:`CommandError` raised by a command, an argument argparse refuses, and any
``OSError`` (a folder that cannot be written, a full disk: the environment, not the
code) or ``MemoryError``; control characters in it (from class names or paths) are
escaped. Other exceptions are bugs and keep their traceback. Output
into a pipe that was closed (``chainrule eval ... | head -c 5``) ends the command quietly
with status 141, as a program killed by SIGPIPE. SIGTERM stops a command the way Ctrl-C
does (a run folder records ``interrupted``), with status 143; the message names the
command that continues the run. What loading data left out or resized is one warning
line on stderr each.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys

from chainrule._text import escaped

# command name -> (module, one-line help)
COMMANDS = {
    "compare": ("chainrule.cli.compare", "train several models and compare their accuracy"),
    "train": ("chainrule.cli.train", "train one model and write a run folder"),
    "eval": ("chainrule.cli.evaluate", "evaluate a trained model on a dataset"),
    "predict": ("chainrule.cli.predict", "classify image files with a trained model"),
    "export": ("chainrule.cli.export", "write a trained model as an ONNX graph"),
    "graph": ("chainrule.cli.graph", "evaluate an expression and draw its computational graph"),
    "report": ("chainrule.cli.report", "write the page of a run folder, or one comparing several"),
}


class CommandError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: the command stops as at Ctrl-C (what was running records it)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line that points to ``--help`` (instead of the
    whole usage block before the error)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from chainrule import __version__

    parser = _Parser(
        prog="chainrule",
        description="Image classification built from the chain rule up.",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Only the chosen command's module is imported to fill in its arguments.
        if name == chosen:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def describe_os_error(e: OSError) -> str:
    """``Permission denied: runs/x/metrics.json``: an OSError in words, without errno."""
    if e.strerror is None:
        return str(e)
    files = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{e.strerror}: {' -> '.join(files)}" if files else e.strerror


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises `Terminated` while a command runs (main thread only)."""

    def terminate(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals to the caller
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_stdout() -> None:
    """After a broken pipe: send what is left of stdout nowhere, so that flushing it at
    exit does not raise again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def _data_warnings(command: str):
    """What loading data left out or changed (`chainrule.data.DataWarning`), printed once
    each on stderr as ``chainrule COMMAND: warning: ...``; other warnings as Python
    shows them."""
    import warnings

    from chainrule.data import DataWarning

    shown: set[str] = set()
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, DataWarning):
            original(message, category, filename, lineno, file, line)
        elif str(message) not in shown:
            shown.add(str(message))
            print(f"chainrule {command}: warning: {escaped(str(message))}", file=sys.stderr,
                  flush=True)  # fmt: skip

    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = show
        yield


def _stopped(how: str, args) -> str:
    """``interrupted``, and how to go on with the run where there is one (a command sets
    ``args.on_stop`` once its run folder is open)."""
    on_stop = getattr(args, "on_stop", None)
    return f"{how}; {on_stop}" if on_stop else how


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.command_line = ["chainrule", *argv]
    module = importlib.import_module(args._module)
    try:
        with _sigterm_as_interrupt(), _data_warnings(args.command):
            code = int(module.run(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 128 + 13  # as a program killed by SIGPIPE
    except Terminated:
        print(_stopped("terminated", args), file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(_stopped("interrupted", args), file=sys.stderr)
        return 130
    except CommandError as e:
        message = str(e)
    except OSError as e:  # the environment: permissions, missing or full disks, ...
        message = describe_os_error(e)
    except MemoryError as e:
        message = f"out of memory{': ' + str(e) if str(e) else ''}"
    # Messages quote class names and paths, which may hold control characters.
    print(f"chainrule {args.command}: error: {escaped(message)}", file=sys.stderr)
    return 2
