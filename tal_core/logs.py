"""One place that decides where log lines go, called where a process starts (the CLI, a Ray worker)."""

from __future__ import annotations

import logging
import sys

NOISY_LIBRARIES = ("urllib3", "alembic", "filelock", "matplotlib", "PIL", "optuna", "ray", "mlflow", "fsspec")


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Log lines (progress, warnings) to stderr, as plain messages: INFO by default, WARNING with --quiet,
    DEBUG with --verbose. Libraries only log; this is the one place that decides where it goes."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s", force=True)
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
