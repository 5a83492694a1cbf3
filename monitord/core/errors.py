"""The error tree every stage raises from; callers catch by kind, not by text."""

from __future__ import annotations


class MonitordError(Exception):
    """Base of every error monitord raises on purpose."""


class ConfigError(MonitordError):
    """A configuration problem; carries one message per problem found.

    Each message already names file, line and key path, so the CLI prints them
    as they are and exits with status 2.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class DriverError(MonitordError):
    """A device could not be read; drivers turn it into quality-marked samples."""


class StoreError(MonitordError):
    """A store backend refused or could not take a write or a read."""


class NotifyError(MonitordError):
    """A notification could not be delivered.

    ``recoverable`` tells the notifier whether a retry with backoff can help.
    """

    def __init__(self, message: str, *, recoverable: bool) -> None:
        self.recoverable = recoverable
        super().__init__(message)
