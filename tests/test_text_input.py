"""The input and output sides of ``slmbench predict``: texts streamed from CSV, JSON lines, Parquet or stdin,
every problem a one-line PredictInputError, and predictions written whole or not at all."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slmbench.cli.prediction_output import PredictionWriter
from slmbench.tasks.text_input import PredictInputError, input_rows, text_batches

TEXTS = ["plain", "a, comma", 'a "quote"', "two\nlines", "ünïcødé ✓", "NA", "", "null", "  spaced  ", "last"]
FORMATS = ["csv", "jsonl", "json", "ndjson", "parquet"]


def write_input(path: Path, rows: list[dict]) -> Path:
    """``rows`` as the file ``path`` (its suffix says the format)."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3)  # row groups that do not line up with batches
    else:
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def read_all(source: str | Path, column: str | None = None, batch_size: int = 4) -> list[list[str]]:
    return list(text_batches(str(source), column, batch_size))


def error_of(source: str | Path, column: str | None = None) -> str:
    with pytest.raises(PredictInputError) as caught:
        read_all(source, column)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- texts, in order, in batches ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_texts_in_order_in_batches_of_the_given_size(tmp_path, fmt):
    path = write_input(tmp_path / f"in.{fmt}", [{"id": i, "text": text} for i, text in enumerate(TEXTS)])

    batches = read_all(path, "text", batch_size=4)

    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert [text for batch in batches for text in batch] == TEXTS


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_column_defaults_to_text_then_to_the_only_column(tmp_path, fmt):
    assert read_all(write_input(tmp_path / f"a.{fmt}", [{"id": "1", "text": "x"}])) == [["x"]]
    assert read_all(write_input(tmp_path / f"b.{fmt}", [{"body": "y"}])) == [["y"]]
    assert read_all(write_input(tmp_path / f"c.{fmt}", [{"id": "1", "body": "z"}]), "body") == [["z"]]


def test_csv_cells_are_texts_na_and_empty_included(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b'\xef\xbb\xbftext,n\nNA,1\n,2\n"",3\nnull,4\nNone,5\n007,6\n')  # a BOM, as Excel writes

    assert read_all(path, batch_size=10) == [["NA", "", "", "null", "None", "007"]]


def test_a_null_or_absent_json_value_is_an_empty_text_and_a_number_its_digits(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n{"text": null}\n\n{"id": 3}\n{"text": 5}\n{"text": 2.5}\r\n{"text": "z"}', encoding="utf-8")

    assert read_all(path, batch_size=10) == [["a", "", "", "5", "2.5", "z"]]


def test_a_parquet_null_is_an_empty_text_and_a_number_its_digits(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"], "n": [1, None, 3]}), path)

    assert read_all(path) == [["a", "", "c"]]
    assert read_all(path, "n") == [["1", "", "3"]]


def test_input_rows_is_known_for_parquet_only(tmp_path):
    rows = [{"text": str(i)} for i in range(7)]

    assert input_rows(str(write_input(tmp_path / "in.parquet", rows))) == 7
    assert input_rows(str(write_input(tmp_path / "in.csv", rows))) is None
    assert input_rows(str(tmp_path / "missing.parquet")) is None
    assert input_rows("-") is None


# --- stdin -------------------------------------------------------------------------------------


def feed_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_stdin_gives_one_text_per_line_without_its_line_ending(monkeypatch):
    feed_stdin(monkeypatch, b"first\r\nsecond\n\nfour\rstill four\nlast\n")

    assert read_all("-", "ignored", batch_size=2) == [["first", "second"], ["", "four\rstill four"], ["last"]]


def test_stdin_without_a_final_newline_keeps_its_last_line(monkeypatch):
    feed_stdin(monkeypatch, b"\xef\xbb\xbfone\ntwo")

    assert read_all("-") == [["one", "two"]]


def test_empty_stdin_fails_at_once(monkeypatch):
    feed_stdin(monkeypatch, b"")

    with pytest.raises(PredictInputError, match=r"^stdin: no text given$"):
        text_batches("-", None)


def test_a_stdin_line_that_is_not_utf8_fails_when_reached(monkeypatch):
    feed_stdin(monkeypatch, b"one\ntwo\nbad \xff byte\n")
    batches = text_batches("-", None, batch_size=2)

    assert next(batches) == ["one", "two"]
    with pytest.raises(PredictInputError, match=r"^stdin: not UTF-8 \(line 3, invalid byte 0xff at column 5\)$"):
        next(batches)


# --- problems with a file ------------------------------------------------------------------------


def test_a_missing_file_a_folder_or_a_fifo_is_refused(tmp_path):
    assert error_of(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: input file not found"
    (tmp_path / "dir.csv").mkdir()
    assert error_of(tmp_path / "dir.csv") == f"{tmp_path / 'dir.csv'}: input file is a folder, not a file"
    os.mkfifo(tmp_path / "pipe.csv")  # opened, it would block until a writer came
    assert "input file is not a regular file" in error_of(tmp_path / "pipe.csv")


def test_an_unknown_extension_is_refused_naming_those_accepted(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("text\nx\n")

    assert error_of(path) == (
        f"{path}: unsupported file type '.txt'; expected one of .csv, .jsonl, .json, .ndjson, .parquet, or - for stdin"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_file_is_refused(tmp_path, fmt):
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(b"")

    assert error_of(path) == f"{path}: input file is empty (0 bytes)"


@pytest.mark.parametrize(("name", "content"), [("in.csv", b"text,label\n"), ("blank.csv", b"\n\n"), ("in.jsonl", b"\n  \n")])
def test_a_file_with_no_rows_is_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)

    assert error_of(path) == f"{path}: has no rows"


def test_a_parquet_file_with_no_rows_is_refused(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)

    assert error_of(path) == f"{path}: has no rows"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_file_that_is_not_utf8_is_refused_at_the_offset_of_its_first_bad_byte(tmp_path, fmt):
    path = write_input(tmp_path / f"in.{fmt}", [{"text": "café"}])
    path.write_bytes(path.read_bytes().replace("é".encode(), "é".encode("latin-1")))
    offset = path.read_bytes().index(b"\xe9")

    assert error_of(path) == f"{path}: not UTF-8 text (invalid byte 0xe9 at byte offset {offset}); save it as UTF-8"


def test_the_offset_of_a_bad_byte_counts_across_the_blocks_scanned(tmp_path):
    path = tmp_path / "in.csv"
    # "é" cut across the 1 MiB block boundary is fine; the byte after the next character is not.
    head = b"text\n" + b"a" * ((1 << 20) - 6) + "é".encode() + b"b\xc3("
    path.write_bytes(head + b"\n")

    assert error_of(path).endswith(f"(invalid byte 0xc3 at byte offset {len(head) - 2:,}); save it as UTF-8")


def test_a_character_cut_off_at_the_end_of_a_file_is_not_utf8(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"text\nx\xe2\x82")

    assert "invalid byte 0xe2 at byte offset 6" in error_of(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path, fmt):
    path = write_input(tmp_path / f"in.{fmt}", [{"id": "1", "body": "x"}])
    where = "the first row has keys" if fmt in ("jsonl", "json", "ndjson") else "its columns are"

    assert error_of(path, "txt") == f"{path}: no column 'txt'; {where} 'id', 'body'; pass --text-column NAME"
    assert error_of(path) == f"{path}: no column 'text' (the default); {where} 'id', 'body'; pass --text-column NAME"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'text\n"never closed\n', "could not be read as CSV: ParserError: Error tokenizing data. C error: EOF inside string"),
        (
            b"text,n\nx,1\ny,2,3\n",
            "could not be read as CSV: ParserError: Error tokenizing data. C error: Expected 2 fields in line 3, saw 3",
        ),
        (b"text,n\nx,1,extra\n", "could not be read as CSV: ParserWarning: Length of header or names does not match length of data."),
    ],
)
def test_a_csv_that_pandas_cannot_parse_is_refused_with_the_first_line_of_its_message(tmp_path, content, problem):
    path = tmp_path / "in.csv"
    path.write_bytes(content)

    assert error_of(path).startswith(f"{path}: {problem}")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"text": "b"', "line 2 is not valid JSON: Expecting ',' delimiter (column 13)"),
        ('["b"]', 'line 2 is a list, not a JSON object such as {"text": "..."}'),
        ('"b"', 'line 2 is a string, not a JSON object such as {"text": "..."}'),
        ("5", 'line 2 is a number, not a JSON object such as {"text": "..."}'),
        ("null", 'line 2 is null, not a JSON object such as {"text": "..."}'),
    ],
)
def test_a_json_line_that_is_not_an_object_is_named(tmp_path, line, problem):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n' + line + "\n", encoding="utf-8")

    assert error_of(path) == f"{path}: {problem}"


def test_a_file_that_is_not_parquet_is_refused(tmp_path):
    path = tmp_path / "in.parquet"
    path.write_text("text\nx\n")

    assert error_of(path).startswith(f"{path}: could not be read as Parquet: ArrowInvalid: ")


def test_a_bad_row_at_the_end_fails_before_the_first_batch(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n' * 5000 + "[1]\n", encoding="utf-8")

    with pytest.raises(PredictInputError, match=r"line 5001 is a list"):
        text_batches(str(path), None, batch_size=10)  # the call itself fails: no batch is ever handed out


def test_a_large_csv_is_streamed_not_held_in_memory(tmp_path):
    path = tmp_path / "big.csv"
    rows = 0
    with path.open("w", encoding="utf-8") as stream:
        stream.write("id,text\n")
        while stream.tell() < 30_000_000:
            stream.write(
                "".join(f"{rows + i},text number {rows + i} with words enough to fill a line of a hundred bytes\n" for i in range(1000))
            )
            rows += 1000

    read_all(write_input(tmp_path / "warm.csv", [{"text": "x"}]))  # imports pandas now, not while memory is traced
    tracemalloc.start()
    try:
        sizes = [len(batch) for batch in text_batches(str(path), "text", batch_size=1000)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert sum(sizes) == rows and set(sizes) == {1000}
    assert peak < 15_000_000, f"peak {peak:,} bytes"


# --- the writer ----------------------------------------------------------------------------------


def test_jsonl_predictions_name_the_label_and_round_the_probabilities(tmp_path):
    output = tmp_path / "out.jsonl"
    with PredictionWriter(["neg", "pos"], output, "jsonl") as writer:
        writer.write([1, 0], [[0.12345678, 0.87654322], [1.0, 0.0]])
        writer.write([1], None)

    assert output.read_text(encoding="utf-8") == (
        '{"label": "pos", "probabilities": {"neg": 0.123457, "pos": 0.876543}}\n'
        '{"label": "neg", "probabilities": {"neg": 1.0, "pos": 0.0}}\n'
        '{"label": "pos"}\n'
    )


def test_csv_predictions_quote_a_label_name_with_a_comma(tmp_path):
    output = tmp_path / "out.csv"
    with PredictionWriter(["a,b", "c"], output, "csv") as writer:
        writer.write([0, 1], [[0.25, 0.75], [0.1234564, 0.8765436]])
        writer.write([0], None)

    assert output.read_text(encoding="utf-8") == ('label,"probability_a,b",probability_c\n"a,b",0.25,0.75\nc,0.123456,0.876544\n"a,b",,\n')


def test_predictions_go_to_stdout_without_an_output(capsys):
    with PredictionWriter(["neg", "pos"], None, "jsonl") as writer:
        writer.write([0], [[0.5, 0.5]])

    assert capsys.readouterr().out == '{"label": "neg", "probabilities": {"neg": 0.5, "pos": 0.5}}\n'


def test_the_output_appears_only_once_the_block_ends_cleanly(tmp_path):
    output = tmp_path / "out.csv"
    with PredictionWriter(["x"], output, "csv") as writer:
        writer.write([0], [[1.0]])
        assert not output.exists()
        assert (tmp_path / ".out.csv.partial").exists()

    assert output.read_text() == "label,probability_x\nx,1.0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_an_exception_in_the_block_leaves_no_output_and_no_partial_file(tmp_path):
    output = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), PredictionWriter(["x"], output, "jsonl") as writer:
        writer.write([0], None)
        raise RuntimeError("the model failed")

    assert list(tmp_path.iterdir()) == []


def test_an_exception_in_the_block_leaves_an_earlier_output_untouched(tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_text("earlier\n")
    with pytest.raises(KeyboardInterrupt), PredictionWriter(["x"], output, "jsonl") as writer:
        writer.write([0], None)
        raise KeyboardInterrupt

    assert output.read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_an_output_folder_that_does_not_exist_or_a_folder_as_output_is_refused(tmp_path):
    missing = tmp_path / "no" / "out.csv"
    with pytest.raises(PredictInputError, match=r"^--output .*out\.csv: folder .*no does not exist$"):
        PredictionWriter(["x"], missing, "csv").__enter__()
    with pytest.raises(PredictInputError, match=r"^--output .*: is a folder; name a file$"):
        PredictionWriter(["x"], tmp_path, "csv").__enter__()


def test_predictions_that_do_not_fit_the_labels_are_a_programming_error(tmp_path):
    with PredictionWriter(["x", "y"], tmp_path / "out.jsonl", "jsonl") as writer, pytest.raises(ValueError):
        writer.write([2], None)
