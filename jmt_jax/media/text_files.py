"""Text files as users' tools save them: UTF-8 with or without a byte-order mark (Excel,
Notepad), UTF-16 (Windows tools, with or without its mark), Windows or old Mac line
endings. Anything else is named with what was found, never read as garbage."""

import codecs

from jmt_jax.errors import BadInput

_MARKS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
          (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
          (codecs.BOM_UTF16_BE, "utf-16"))


def encoding_of(raw):
  """The encoding of the bytes `raw`: from its byte-order mark, else UTF-16 when every
  other byte of its start is zero (ASCII text saved as UTF-16 without a mark), else UTF-8."""
  for mark, name in _MARKS:
    if raw.startswith(mark):
      return name
  head = raw[:200]
  if len(head) >= 4 and len(head) % 2 == 0:
    if not any(head[1::2]) and all(head[0::2]):
      return "utf-16-le"
    if not any(head[0::2]) and all(head[1::2]):
      return "utf-16-be"
  return "utf-8"


def read_text(path):
  """The text of the file at `path`, decoded as `encoding_of` says (BadInput, naming the
  file, where it is not that encoding's text)."""
  with open(path, "rb") as f:
    raw = f.read()
  encoding = encoding_of(raw)
  try:
    return raw.decode(encoding)
  except UnicodeDecodeError as e:
    raise BadInput(f"{path}: not {encoding.upper().replace('-SIG', '')} text (byte "
                   f"{e.start} is {raw[e.start:e.start + 1]!r}): save it as UTF-8") from None


def read_lines(path):
  """The lines of `read_text` without their endings (\\n, \\r\\n or \\r)."""
  return read_text(path).splitlines()
