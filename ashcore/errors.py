"""One family of errors. The CLI prints `str(error)` and the hint on one line each."""

from __future__ import annotations


class AshError(Exception):
    """Something the user can act on. `hint` says what to do; `exit_code`, how `ashctl`
    exits."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = str(self.args[0])
        return f"{message} ({self.hint})" if self.hint else message


class ConfigError(AshError):
    """A configuration file is malformed or unsafe."""


class UsageError(AshError):
    """Bad input on the command line: exit code 2."""

    exit_code = 2


class CannotRunError(AshError):
    """`ashctl run` could not start its command: exit code 127 when it is not found, 126
    when it cannot be executed, as a shell's."""

    def __init__(self, message: str, *, not_found: bool) -> None:
        super().__init__(message)
        self.exit_code = 127 if not_found else 126


class NotFoundError(AshError):
    """No such layer."""


class StoreError(AshError):
    """The store is missing, locked too long, or inconsistent."""


class BackendError(AshError):
    """The filesystem refused an operation (not btrfs, full, read-only...)."""
