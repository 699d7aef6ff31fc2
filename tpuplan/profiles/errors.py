"""The one exception type of tpuplan; the CLI turns it into a one-line error and exit code 1."""

from __future__ import annotations


class TpuplanError(Exception):
    """Bad input or an impossible request, with a message fit for one line on stderr."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def quoted(text: str, limit: int = 60) -> str:
    """A user's value inside a one-line message: quoted, and cut short when it is long (a 5,000-digit
    number must not become a 5,000-character error line)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


class UsageError(TpuplanError):
    """A flag or argument that cannot be right whatever the files say: exit code 2, as click's own."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


def printable(text: str) -> str:
    """Text from a document or a file name as printed for people: a control character (a newline, an
    ANSI escape, a bidi override) is shown escaped, so that a name cannot add lines to a table or an error
    or drive the terminal, and the bytes of a name that is not UTF-8 are shown as escapes."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
