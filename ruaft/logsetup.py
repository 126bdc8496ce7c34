"""Structured logging: every line names the peer, its term and its role.

Peers log to a file of their own (`configure_peer_logging`); the level comes from the
`RUAFT_LOG` environment variable (DEBUG, INFO, WARNING; default INFO) or `--verbose`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class PeerLogger:
    """Prefixes every message with `context()` (e.g. "peer=1 term=4 role=leader")."""

    def __init__(self, logger: logging.Logger, context: Callable[[], str]):
        self._logger = logger
        self._context = context

    def _log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, "%s " + msg, self._context(), *args, exc_info=exc_info)

    def debug(self, msg: str, *args: Any) -> None:
        self._log(logging.DEBUG, msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self._log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._log(logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: Any) -> None:
        self._log(logging.ERROR, msg, *args, exc_info=True)


def log_level(verbose: bool = False) -> int:
    """DEBUG with `verbose`, else the RUAFT_LOG level name, else INFO."""
    if verbose:
        return logging.DEBUG
    name = os.environ.get("RUAFT_LOG", "INFO").upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


def configure_peer_logging(log_file: Path, verbose: bool = False) -> None:
    """Send the root logger to `log_file` (appending), at the configured level."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level(verbose))
