"""Where ``slmbench predict`` writes its predictions: one line per text, as JSON lines or CSV, to stdout or
to a file that appears only once every prediction is written."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Literal, TextIO

from slmbench.tasks.text_input import PredictInputError


class PredictionWriter:
    """Writes predictions to ``output``, or to stdout when it is None, as ``fmt``.

    A file is written beside ``output`` as ``.<name>.partial`` and renamed onto it when the ``with``
    block ends without an exception; after one, the partial file is deleted and ``output`` is untouched.
    """

    def __init__(self, label_names: list[str], output: Path | None, fmt: Literal["jsonl", "csv"]) -> None:
        self.label_names = list(label_names)
        self.output = output
        self.fmt = fmt
        self._partial = None if output is None else output.with_name(f".{output.name}.partial")
        self._stream: TextIO = sys.stdout
        self._csv = csv.writer(self._stream)

    def __enter__(self) -> PredictionWriter:
        self._stream = sys.stdout if self._partial is None else self._open_partial()
        self._csv = csv.writer(self._stream, lineterminator="\n")  # quotes a name with a comma or a quote
        if self.fmt == "csv":
            self._csv.writerow(["label", *(f"probability_{name}" for name in self.label_names)])
        self._flush_stdout()
        return self

    def write(self, labels: list[int], probabilities: list[list[float]] | None) -> None:
        """One line per text: its label's name and, when given, every label's probability (6 places)."""
        if probabilities is not None and len(probabilities) != len(labels):
            raise ValueError(f"{len(labels)} labels but {len(probabilities)} rows of probabilities")
        names = self.label_names
        rows: list[list[float] | None] = [None] * len(labels) if probabilities is None else list(probabilities)
        for label, row in zip(labels, rows):
            if not 0 <= label < len(names) or (row is not None and len(row) != len(names)):
                raise ValueError(f"label {label} or its {len(row or [])} probabilities do not fit the {len(names)} labels")
            name, rounded = names[label], None if row is None else [round(float(p), 6) for p in row]
            if self.fmt == "csv":
                self._csv.writerow([name, *([""] * len(names) if rounded is None else [str(p) for p in rounded])])
            else:
                line = {"label": name} if rounded is None else {"label": name, "probabilities": dict(zip(names, rounded))}
                self._stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._flush_stdout()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._partial is None or self.output is None:
            self._flush_stdout()
            return
        try:
            self._stream.close()
            if kind is None:
                os.replace(self._partial, self.output)
        finally:
            self._partial.unlink(missing_ok=True)  # gone once renamed; else (a failure) dropped, output untouched

    def _open_partial(self) -> TextIO:
        assert self._partial is not None and self.output is not None
        if self.output.is_dir():
            raise PredictInputError(f"--output {self.output}: is a folder; name a file")
        try:
            return self._partial.open("w", encoding="utf-8", newline="")
        except FileNotFoundError:
            raise PredictInputError(f"--output {self.output}: folder {self.output.parent} does not exist") from None
        except OSError as error:
            raise PredictInputError(f"--output {self.output}: cannot write in {self.output.parent}: {error.strerror or error}") from None

    def _flush_stdout(self) -> None:
        if self._partial is None:
            self._stream.flush()
