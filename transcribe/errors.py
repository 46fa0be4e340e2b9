"""The one exception type for user mistakes; the CLI prints its message in one line."""


class TranscribeError(Exception):
    """A problem the user can fix (missing file, unreadable audio, output exists...).

    The message says what went wrong and what to do about it.
    """


class UsageError(TranscribeError):
    """A contradiction in the command line itself (the CLI exits 2): e.g. --format json -o x.mid."""
