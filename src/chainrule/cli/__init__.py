"""The `chainrule` command line: parses arguments, calls the experiment layer
(``chainrule.experiment``) or loads a model file, and shows the results.

Each subcommand lives in its own module of this package and provides two functions:
``add_arguments(parser)`` fills its argparse parser, and ``run(args) -> int`` does the
work and returns the exit status. Modules are imported only when their command runs,
so ``chainrule --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help)
COMMANDS = {
    "compare": ("chainrule.cli.compare", "train several models and compare their accuracy"),
    "train": ("chainrule.cli.train", "train one model and write a run folder"),
    "eval": ("chainrule.cli.evaluate", "evaluate a trained model on a dataset"),
    "predict": ("chainrule.cli.predict", "classify image files with a trained model"),
    "export": ("chainrule.cli.export", "write a trained model as an ONNX graph"),
    "graph": ("chainrule.cli.graph", "evaluate an expression and draw its computational graph"),
}


class CommandError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from chainrule import __version__

    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except CommandError as e:
        print(f"chainrule {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
