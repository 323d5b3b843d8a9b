"""The one exception type users see: its message is the whole story, one line."""


class VggishError(Exception):
    """A problem with the user's input, model or environment (exit code 2).

    The message names the file or value at fault and the cause; the CLI prints
    it as ``error: <message>`` with no traceback.
    """
