"""The one base class for input a user can fix: a config key, a file line, a label value.

The CLI prints these as a one-line error (exit 2) instead of a traceback; every such message already
names the file, line or key it is about.
"""


class InputError(ValueError):
    """Bad input, reported with the file/line/key it concerns; nothing was stored because of it."""
