"""The one exception type users see: its message is the whole story, one line."""


class VggishError(Exception):
    """A problem with the user's input, model or environment (exit code 2).

    The message names the file or value at fault and the cause; the CLI prints
    it as ``error: <message>`` with no traceback.
    """


class ArgumentError(VggishError):
    """A bad argument value, named as the caller named it: ``precision='int4': expected one of ...`` from
    Python, ``--precision int4: expected one of ...`` on the command line, whose options carry the same
    names (:meth:`on_command_line`)."""

    def __init__(self, name: str, value: object, why: str) -> None:
        self.name, self.value, self.why = name, value, why
        super().__init__(f"{name}={value!r}: {why}")

    def on_command_line(self) -> str:
        return f"--{self.name.replace('_', '-')} {self.value}: {self.why}"


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (the CLI installs the handler), so a
    terminated job unwinds as an interrupted one does: its store closed, its
    workers gone, one line said."""


class Interrupted(VggishError):
    """A job stopped by Ctrl-C (exit code 130) or SIGTERM (143); the message says
    what was kept and how to go on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def from_signal(cls, interrupt: KeyboardInterrupt, what_was_kept: str) -> "Interrupted":
        if isinstance(interrupt, Terminated):
            return cls(f"terminated (SIGTERM); {what_was_kept}", 143)
        return cls(f"interrupted; {what_was_kept}", 130)


class DemoModelWarning(UserWarning):
    """An Embedder was made on the seeded demo model: its embeddings carry no meaning. The CLI says so in its
    own note and ignores this warning."""
