"""The one exception type for user mistakes, whose message the CLI prints in one line, and
the exit codes by which it tells what happened."""

# Every input transcribed: 0; some input failed (or nothing written): 1; bad usage: 2;
# interrupted (Ctrl-C): 130, and 128 + the number of any other signal that stopped it.
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class TranscribeError(Exception):
    """A problem the user can fix (missing file, unreadable audio, output exists...).

    The message says what went wrong and what to do about it.
    """


class UsageError(TranscribeError):
    """A contradiction in the command line itself (the CLI exits 2): e.g. --format json -o x.mid."""
