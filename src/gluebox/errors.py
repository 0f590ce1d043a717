"""The one exception type that means "the user asked for something we cannot do".

The CLI turns a :class:`GlueboxError` into one line on stderr and exit code 2, with no
traceback (``--debug`` shows it). Everything else is a bug and keeps its traceback.
"""


class GlueboxError(Exception):
    """A problem with the user's input or environment, explained in one line with a fix."""

    exit_code = 2

    def __str__(self) -> str:
        """The message on one line: line breaks that came from the user's data are escaped."""
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")
