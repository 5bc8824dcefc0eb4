"""The one error the io package raises for a bad input file."""


class InputError(ValueError):
  """A problem with a user's file: the message names it in one line."""
