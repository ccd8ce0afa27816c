"""Errors a user can fix. The CLIs print their message and exit with code 2, never a traceback."""


class UserError(Exception):
    """Something in the user's input or settings is wrong; the message says what to do."""


class DataError(UserError):
    """The dataset file cannot be used as it is."""


class ConfigError(UserError):
    """A trial configuration or search space holds a value outside its allowed range."""
