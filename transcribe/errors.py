"""The one exception type for user mistakes; the CLI prints its message in one line."""


class TranscribeError(Exception):
    """A problem the user can fix (missing file, unreadable audio, output exists...).

    The message says what went wrong and what to do about it.
    """
