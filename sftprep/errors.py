"""Errors sftprep raises, and the exit codes the CLI maps them to.

Two kinds of failure exist and they are kept apart on purpose:

* a *record* problem (one bad line in an input) is a :class:`RecordError`. With
  ``--on-error fail`` it stops the build; with ``--on-error skip`` it is counted
  under its ``reason`` code and written to the rejects file;
* a *build* problem (missing input, unknown template, a tokenizer that does not
  load, ...) is any other :class:`SftprepError` and always stops the build.

The exit codes are part of the public contract (scripts branch on them): all of
them are declared below and documented in docs/errors.md.
"""

from __future__ import annotations

# Exit codes: stable, every one declared here and documented in docs/errors.md ("exit code").
EXIT_OK = 0  # success; for `sftprep diff`, also: the builds hold the same examples
EXIT_DIFFERENT = 1  # `sftprep diff` only: the builds differ (diff(1)'s 1; never an error)
EXIT_USAGE = 2  # bad options or configuration (also click's own usage errors)
EXIT_DATA = 3  # bad input data: a bad record, or too many skipped records
EXIT_IO = 4  # an input that cannot be read, an output that cannot be written
EXIT_PROBLEMS = 5  # `sftprep verify`: the build breaks a rule or disagrees with its manifest
# A bug in sftprep: please report it. Not 1, which `sftprep diff` returns for "different"
# (a script must not read a crash as a difference); 70 is sysexits.h's EX_SOFTWARE.
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT, after cleaning up
EXIT_TERMINATED = 143  # SIGTERM, after cleaning up


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun agreeing, for messages: ``counted(1, "record")`` -> ``"1 record"``.

    ``counted(1200, "record")`` -> ``"1,200 records"``; give ``plural`` for irregular nouns.
    """
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


class SftprepError(Exception):
    """Base class of every error sftprep reports to the user without a traceback."""

    exit_code = EXIT_INTERNAL


class Terminated(BaseException):
    """Raised in the main process when it receives SIGTERM, so that cleanup runs."""


class ConfigError(SftprepError):
    """Bad options, an unknown template or field, an output that already exists."""

    exit_code = EXIT_USAGE


class TemplateError(ConfigError):
    """A template file that cannot be loaded or does not fit the data."""


class TokenizerError(ConfigError):
    """A tokenizer that cannot be found or loaded."""


class InputError(SftprepError):
    """An input file that is missing or cannot be read as a whole."""

    exit_code = EXIT_IO


class OutputError(SftprepError):
    """The output cannot be written (permissions, full disk, ...)."""

    exit_code = EXIT_IO


class DataError(SftprepError):
    """The data is bad: a rejected record under ``--on-error fail``, or too many skips."""

    exit_code = EXIT_DATA


class RecordError(DataError):
    """One input record that cannot become a training row.

    Args:
        where: ``file:line`` (or ``file: record N``) of the record.
        reason: a stable, machine-readable reason code such as ``missing_field``;
            the manifest and summary count skipped records per reason.
        message: what was expected and what was found, for a human.
        field: the template field involved, if any.
    """

    def __init__(self, where: str, reason: str, message: str, field: str | None = None):
        self.where = where
        self.reason = reason
        self.field = field
        self.detail = message
        prefix = f"{where}: field '{field}': " if field else f"{where}: "
        super().__init__(prefix + message)

    def __reduce__(self):
        # Worker processes send rejected records back to the parent: keep them picklable.
        return (RecordError, (self.where, self.reason, self.detail, self.field))


# The engines' errors (sftprep.engines): where the transform runs failed, not the data.


class TransformError(SftprepError):
    """The transform crashed on a record (a bug, not bad data); the message names the record."""

    exit_code = EXIT_INTERNAL


class WorkerError(SftprepError):
    """A worker process or Ray task died without a result (killed, crashed, out of memory)."""


class RayClusterError(SftprepError):
    """The Ray cluster named by --ray-address (or RAY_ADDRESS) cannot be reached."""

    exit_code = EXIT_IO
