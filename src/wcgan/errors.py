"""The one exception type that reaches users as a single line."""


class WcganError(Exception):
    """Bad input or a failed run, explained in one line that names the file, label or key at fault.

    The CLI prints it as ``wcgan: error: <message>`` and exits with ``exit_code``; every other
    exception is a bug and keeps its traceback.
    """

    exit_code = 1


class TrainingInterrupted(WcganError):
    """SIGTERM or Ctrl-C stopped training after a checkpoint was written; a rerun resumes."""

    exit_code = 143  # 128 + SIGTERM, what schedulers expect from a job they stopped
