"""The command line's building blocks: argument types, the subcommand factory, the shared --config/--set
arguments. Both ``talsearch.cli`` and ``talsearch.commands`` import them from here (neither imports the other's
helpers)."""

from __future__ import annotations

import argparse
from pathlib import Path


def set_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys (dotted names; values parse as YAML); repeatable")


def config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML config (keys as in configs/base.yaml)")
    set_arg(parser)


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default and keeps the description's line breaks."""


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def tiou(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a tIoU threshold must lie in (0, 1], got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port lies in 1..65535, got {text}")
    return value


def add_command(sub, name: str, help_text: str, func):
    parser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=Formatter)
    parser.set_defaults(func=func)
    return parser
