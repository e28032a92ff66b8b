"""The tables runs leave behind (a sweep's comparison, robustness, cross-validation), each
written from its rows as CSV, Markdown and JSON."""

import csv
import json
import math
import os


def markdown(header, rows):
  """The lines of a Markdown table: `header` the column names, `rows` lists of cells."""
  return ([f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
          + [f"| {' | '.join(str(c) for c in row)} |" for row in rows])


def mean_std(mean, std, digits):
  """"mean +- std"; the mean alone where there is no std (one run: nan)."""
  if std is None or math.isnan(std):
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} +- {std:.{digits}f}"


def write(stem, rows, markdown_lines, document):
  """stem.csv of `rows` (dicts; columns in the order they first appear), stem.md of
  `markdown_lines` and stem.json of `document`."""
  os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
  with open(stem + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
  with open(stem + ".md", "w") as f:
    f.write("\n".join(markdown_lines) + "\n")
  with open(stem + ".json", "w") as f:
    json.dump(document, f, indent=2)
