"""The core's loggers, imported lazily: a hook pays for `logging` (6 ms of imports) only
when there is something to say.

`logger(__name__)` returns a stand-in with the usual methods; the first message imports
`logging`, and when nobody has configured it (a hook process), sends the core's messages
to stderr, one line each. The CLI and in-process plugins configure logging themselves.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class LazyLogger:
    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def _get(self) -> Any:
        if self._logger is None:
            import logging

            core = logging.getLogger("ashcore")
            if not logging.getLogger().handlers and not core.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(message)s"))
                core.addHandler(handler)
                core.setLevel(logging.DEBUG if os.environ.get("ASH_DEBUG") else logging.INFO)
            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, message: str, *args: object) -> None:
        if os.environ.get("ASH_DEBUG") or "logging" in sys.modules:
            self._get().debug(message, *args)

    def info(self, message: str, *args: object) -> None:
        self._get().info(message, *args)

    def warning(self, message: str, *args: object) -> None:
        self._get().warning(message, *args)

    def error(self, message: str, *args: object) -> None:
        self._get().error(message, *args)

    def exception(self, message: str, *args: object) -> None:
        self._get().exception(message, *args)


def logger(name: str) -> LazyLogger:
    return LazyLogger(name)
