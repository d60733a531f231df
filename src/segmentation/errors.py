"""Errors shown to users: one line each, with a documented exit code.

Exit codes (also in the README):
  2  the config or the command line is wrong
  3  the data is invalid (schema, ranges, hash mismatch)
  4  the data is missing and could not be downloaded
  5  `segment verify` found outputs that differ from their manifest
  6  another run is using the same folder
  7  the Spark engine cannot run: pyspark or Java missing, no master answering, a failed job
  1  a file could not be read or written (disk full, permissions)
"""


class SegmentationError(Exception):
    """A problem the user can fix; the CLI prints its message without a traceback."""

    exit_code = 1


class ConfigError(SegmentationError):
    """The config file or a command-line option is wrong."""

    exit_code = 2

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        """The dotted config key at fault, when the message does not yet say where it is."""


class DataError(SegmentationError):
    """The input data is invalid or does not match its pinned hash."""

    exit_code = 3


class DataUnavailableError(SegmentationError):
    """The data file is missing and could not be fetched."""

    exit_code = 4


class VerificationError(SegmentationError):
    """A recomputed version does not match its manifest byte for byte."""

    exit_code = 5


class BusyError(SegmentationError):
    """Another run holds the lock on the same artifacts folder."""

    exit_code = 6


class EngineError(SegmentationError):
    """The Spark engine cannot run here, or its cluster failed the job."""

    exit_code = 7
