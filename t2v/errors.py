"""The one exception type t2v raises for bad user input.

Entry points catch it and print its message on one line instead of a traceback, so every
message must name the offending thing and say how to fix it.
"""


class T2VError(Exception):
    """A problem with the user's input, config or files, with a one-line fix in its message."""
