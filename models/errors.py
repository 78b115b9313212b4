"""Errors that mean "your input is wrong", as opposed to a bug: the CLI prints them and exits 2, the service answers 4xx."""


class InputError(ValueError):
    """Bad input named precisely (file, row, flag or field and the reason)."""
