"""The texts ``slmbench predict`` classifies: a column of a CSV, JSON-lines or Parquet file, or one text
per line on stdin, streamed in batches so that a file of any size never sits in memory.

A file is checked whole before its first batch (a first pass that keeps nothing), so a bad row near
its end fails the command before a model is loaded, not after hours of predictions.
"""

from __future__ import annotations

import codecs
import itertools
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from slmbench.common.files import file_problem
from slmbench.common.text import first_line

FORMATS = {".csv": "CSV", ".jsonl": "JSON lines", ".json": "JSON lines", ".ndjson": "JSON lines", ".parquet": "Parquet"}
DEFAULT_COLUMN = "text"
SCAN_BYTES = 1 << 20
"""The UTF-8 check reads a file this many bytes (1 MiB) at a time."""


class PredictInputError(ValueError):
    """The input or output of ``slmbench predict`` is unusable; the message names the file (or stdin) and the problem."""


def text_batches(source: str, column: str | None, batch_size: int = 1024) -> Iterator[list[str]]:
    """The texts of ``source`` in order, in lists of ``batch_size`` (the last may be shorter).

    ``source`` is a .csv, .jsonl (.json, .ndjson) or .parquet file, whose ``column`` (default "text",
    or the file's only column) is read, or "-" for one text per line on stdin. A missing cell is "".
    Every problem with a file is raised here, as a PredictInputError, before any batch is returned;
    stdin is read as it comes, and a line that is not UTF-8 fails when it is reached.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if source == "-":
        return _batched(_stdin_texts(), batch_size)
    path = Path(source)
    read = _reader(path)
    _check_rows(path, read(path, column, batch_size))
    return _batched(read(path, column, batch_size), batch_size)


def input_rows(source: str) -> int | None:
    """How many texts ``source`` holds where that is cheap to know (a Parquet file's metadata), else None."""
    if source == "-" or Path(source).suffix.lower() != ".parquet":
        return None
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(source) as file:
            return int(file.metadata.num_rows)
    except Exception:  # noqa: BLE001 - only a progress bar's total; text_batches reports the problem
        return None


def _reader(path: Path) -> Callable[[Path, str | None, int], Iterator[str]]:
    """The function that reads ``path``'s texts, once the file exists, is readable, is not empty and (unless
    Parquet) is UTF-8."""
    problem = file_problem(path, max_bytes=sys.maxsize)
    if problem is None:
        try:
            path.open("rb").close()
        except OSError as error:
            problem = f"cannot be read: {error.strerror or error}"
    if problem:
        raise PredictInputError(f"{path}: input file {problem}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        accepted = ", ".join(FORMATS)
        raise PredictInputError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {accepted}, or - for stdin")
    if path.stat().st_size == 0:
        raise PredictInputError(f"{path}: input file is empty (0 bytes)")
    if suffix == ".parquet":
        return _parquet_texts
    _check_utf8(path)
    return _csv_texts if suffix == ".csv" else _jsonl_texts


def _check_utf8(path: Path) -> None:
    """Raise unless ``path`` is UTF-8, naming the offset of the first bad byte; 1 MiB is read at a time."""
    # pandas finds a bad byte only when its chunk reaches it, after batches were returned, at an offset in its own buffer.
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as stream:
        while True:
            block = stream.read(SCAN_BYTES)
            pending = len(decoder.getstate()[0])  # the bytes of a character cut by the previous block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                at = offset - pending + error.start
                byte = error.object[error.start]
                raise PredictInputError(
                    f"{path}: not UTF-8 text (invalid byte 0x{byte:02x} at byte offset {at:,}); save it as UTF-8"
                ) from None
            if not block:
                return
            offset += len(block)


def _check_rows(path: Path, texts: Iterator[str]) -> None:
    """Read every text once, keeping none, so that a parse error or a missing column is raised now."""
    from pandas.errors import ParserWarning

    rows = 0
    with warnings.catch_warnings():
        # pandas only warns when a row has more cells than the header, and drops the extra ones.
        warnings.simplefilter("error", ParserWarning)
        try:
            for _ in texts:
                rows += 1
        except PredictInputError:
            raise
        except Exception as error:  # noqa: BLE001 - any reader failure is a problem with the file
            raise PredictInputError(f"{path}: could not be read as {FORMATS[path.suffix.lower()]}: {first_line(error)}") from None
    if rows == 0:
        raise PredictInputError(f"{path}: has no rows")


def _csv_texts(path: Path, column: str | None, batch_size: int) -> Iterator[str]:
    import pandas as pd

    try:
        # Every cell is text and only an absent cell is empty: "NA" or "null" is a text like any other.
        chunks = pd.read_csv(path, chunksize=batch_size, dtype=str, keep_default_na=False, index_col=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:  # blank lines only: no header, no rows
        return
    with chunks:
        for chunk in chunks:
            yield from map(_text, chunk[_column(path, column, list(chunk.columns))].tolist())


def _jsonl_texts(path: Path, column: str | None, batch_size: int) -> Iterator[str]:
    # By hand, not pd.read_json: pandas takes a chunk of lists or numbers for a table, turns 5 into 5.0
    # beside a null and names no line in its errors. A row without the column is a missing cell.
    name, first_keys, found = column or DEFAULT_COLUMN, None, False
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = _json_object(path, number, line)
            if first_keys is None:
                first_keys = list(row)
                name = column or (first_keys[0] if len(first_keys) == 1 else DEFAULT_COLUMN)
            found = found or name in row
            yield _text(row.get(name))
    if first_keys is not None and not found:
        _column(path, column, first_keys, where="the first row has keys")


def _json_object(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line.rstrip("\r\n"))  # an error at the line end names its last column
    except json.JSONDecodeError as error:
        raise PredictInputError(f"{path}: line {number} is not valid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(row, dict):
        kind = {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(row), "a number")
        raise PredictInputError(f'{path}: line {number} is {kind}, not a JSON object such as {{"text": "..."}}')
    return row


def _parquet_texts(path: Path, column: str | None, batch_size: int) -> Iterator[str]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as file:
        name = _column(path, column, file.schema_arrow.names)
        for batch in file.iter_batches(columns=[name], batch_size=batch_size):
            yield from map(_text, batch.column(0).to_pylist())


def _column(path: Path, column: str | None, columns: list[str], where: str = "its columns are") -> str:
    """The text column: ``column``, else "text", else the only column; a PredictInputError if absent."""
    name = column or (columns[0] if len(columns) == 1 else DEFAULT_COLUMN)
    if name not in columns:
        default = "" if column else " (the default)"
        listed = ", ".join(repr(c) for c in columns[:20]) + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")
        raise PredictInputError(f"{path}: no column {name!r}{default}; {where} {listed or '(none)'}; pass --text-column NAME")
    return name


def _stdin_texts() -> Iterator[str]:
    """The lines of stdin, without their line endings; the first is read now, so that empty stdin fails at once."""
    lines = iter(sys.stdin.buffer)
    first = next(lines, None)
    if first is None:
        raise PredictInputError("stdin: no text given")
    return _decoded(itertools.chain([first], lines))


def _decoded(lines: Iterable[bytes]) -> Iterator[str]:
    # Bytes decoded line by line: a text-mode stdin would fail on a bad byte with no line number, or replace it.
    for number, line in enumerate(lines, 1):
        line = line[:-2] if line.endswith(b"\r\n") else line.removesuffix(b"\n")
        try:
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise PredictInputError(
                f"stdin: not UTF-8 (line {number}, invalid byte 0x{line[error.start]:02x} at column {error.start + 1})"
            ) from None


def _batched(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    # Readers end their chunks where they like (a Parquet row group, a blank line): cut full batches here.
    texts = iter(texts)
    while batch := list(itertools.islice(texts, size)):
        yield batch


def _text(value: object) -> str:
    """A cell as text: a missing cell (None) is "", a number ``str(value)``."""
    return value if isinstance(value, str) else "" if value is None else str(value)
