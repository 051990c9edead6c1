"""Errors a user can act on. The CLI prints them as one `Error:` line."""


class WhisperfastError(Exception):
    """Base class: the message is meant for the user, without a traceback."""


class AudioError(WhisperfastError):
    pass


class ModelError(WhisperfastError):
    pass
