"""The exception types that mean "the user asked for something we cannot do" or "the run was stopped".

The CLI turns a :class:`GlueboxError` into one line on stderr and its exit code (2), with
no traceback (``--debug`` shows it). Everything else is a bug and keeps its traceback.
"""

import signal


class GlueboxError(Exception):
    """A problem with the user's input or environment, explained in one line with a fix."""

    exit_code = 2
    label = "error"
    """The word after ``gluebox:`` on the error line."""

    def __str__(self) -> str:
        """The message on one line: line breaks that came from the user's data are escaped."""
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class RunInterrupted(GlueboxError):
    """SIGINT or SIGTERM stopped a training run; the exit code is 128 + the signal number (130, 143)."""

    label = "interrupted"

    def __init__(self, message: str, signum: int, every_process: bool = False, quiet: bool = False):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)
        self.every_process = every_process
        """All processes of the run stopped together, after the same checkpoint (not a second signal's
        stop at once, which leaves the others where they were)."""
        self.quiet = quiet
        """Nothing to print: another process of the run (rank 0) says it."""

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class RunStopped(GlueboxError):
    """A run ended early on purpose (a sweep's scheduler stopped it); its status says ``stopped``."""
