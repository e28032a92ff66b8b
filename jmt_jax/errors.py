"""The one exception the raw-data readers raise for a file they cannot use."""


class BadInput(Exception):
  """A raw file that cannot be used; the message is one line naming the file and the problem."""
