"""The user-facing error base: bad input, a missing file, an unreachable server.

The CLI turns a ``UserError`` into exit status 2 and one line naming the cause; any other
exception is a bug and keeps its traceback. Light on purpose: no heavy imports.
"""


class UserError(Exception):
    """Something the user can fix; the message names the file, key or value."""


class VideoDecodeError(UserError, RuntimeError):
    """A video could not be decoded; the message names the file."""


class TrackingUnreachableError(UserError, ConnectionError):
    """The MLflow tracking store does not answer; the message names it."""
