"""User-facing errors.

The library raises these; only the CLI (and the dashboard) turn them into one printed sentence.
Every message says what was expected, what was received, and what to change.
"""


class MetabenchError(Exception):
    """An error caused by the user's input or environment, with a message meant for them."""


class ConfigError(MetabenchError, ValueError):
    """A run specification, option or name that is not valid."""


class DataUnavailable(MetabenchError):
    """A dataset is missing and cannot be fetched (for example, no network)."""


class ChecksumError(MetabenchError):
    """A downloaded or cached file does not match its published checksum."""


class ResultsError(MetabenchError):
    """The results folder cannot be written or holds files that cannot be read."""
