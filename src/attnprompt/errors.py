"""The one exception type users see."""


class AttnPromptError(Exception):
    """A user-facing error whose message is one clear line.

    The CLI prints these as ``error: <message>`` without a traceback; anything else is a bug
    and keeps its traceback.
    """
