"""The exceptions that reach users as a single line (or, for ``QuietExit``, none)."""


class WcganError(Exception):
    """Bad input or a failed run, explained in one line that names the file, label or key at fault.

    The CLI prints it as ``wcgan: error: <message>`` and exits with ``exit_code``; every other
    exception is a bug and keeps its traceback.
    """

    exit_code = 1


class QuietExit(WcganError):
    """A process of a group stops because another one refused; that one's line says why, so the
    CLI prints nothing for this one."""


class TrainingInterrupted(WcganError):
    """SIGTERM or Ctrl-C stopped training after a checkpoint was written; a rerun resumes."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number  # 143 for SIGTERM, 130 for Ctrl-C: the shell's convention
