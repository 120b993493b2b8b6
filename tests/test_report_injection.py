"""Hostile labels, texts, strategy names, arguments and error messages rendered into ``report.md``,
and the markdown parsed back (markdown-it-py, GFM tables on, raw HTML recognised): the report's
headings, table columns, code spans and its one fence survive, every hostile value reads back as
the literal text it was, no raw HTML token comes from data, and no control character is written.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cli_harness import count
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from slmbench.report.markdown import first_line, one_line, shorten, strip_control
from slmbench.report.per_class import MAX_TEXT_CHARS
from slmbench.report.render import render_report

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
OK_TRIALS = ("zero-shot", "embedding-classifier", "lora")
FAILED_TRIAL = "full-finetune"
SECTIONS = {
    "Recommendation",
    "Leaderboard",
    "What this test set can see",
    "Trade-offs",
    "Cost per prediction",
    "Calibration",
    "Per-class results",
    "Failures",
    "Data and protocol",
    "Published reference points",
    "Environment",
}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
PARSER = MarkdownIt("commonmark", {"html": True}).enable("table")


def _rename_keys(mapping: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in mapping.items()}


def hostile_run(folder: Path, labels: list[str], names: list[str], error: str, commands: list[str], texts: list[str], other: str) -> Path:
    """The fixture run with every name, text and message replaced by hostile ones (consistently)."""
    run_dir = Path(shutil.copytree(FIXTURE, folder / "run"))
    run = json.loads((run_dir / "run.json").read_text())
    renamed = dict(zip(run["labels"], labels))
    run.update(task=other, run_id=other, started_at=other, commands=commands, labels=labels)
    run["splits"]["per_class"] = {split: _rename_keys(counts, renamed) for split, counts in run["splits"]["per_class"].items()}
    run["floors"] = {"majority_label": labels[1], "accuracy": 0.3, "macro_f1": 0.2}
    run["data"]["file"] = other
    run["references"] = [{"system": other, "metric": other, "value": 0.5, "source": other}]
    run["environment"].update(python=other, packages={other: other})
    run["profile"]["name"] = other  # a profile's one text (caps are numbers; unknown ones are ignored)
    (run_dir / "run.json").write_text(json.dumps(run))
    for name, trial_name in zip(names, [*OK_TRIALS, FAILED_TRIAL]):
        path = run_dir / "trials" / f"{trial_name}.seed0.json"
        trial = json.loads(path.read_text())
        trial.update(variant=name, labels=labels, family=other, description=other, options={"x": other})
        if trial["metrics"]:
            trial["metrics"]["per_class"] = _rename_keys(trial["metrics"]["per_class"], renamed)
        if trial["error"]:
            trial["error"]["message"] = error
        path.write_text(json.dumps(trial))
    test_texts = json.loads((run_dir / "test_texts.json").read_text())
    (run_dir / "test_texts.json").write_text(json.dumps([texts[i % len(texts)] for i in range(len(test_texts))]))
    return run_dir


def _inline_text(token: Any) -> str:
    """What a reader sees of an inline token: text and code spans, markup removed."""
    return "".join(child.content for child in token.children or [] if child.type in ("text", "code_inline"))


def _tables(tokens: list[Any]) -> list[list[list[str]]]:
    """Every table as rows of cell texts (header row first)."""
    tables: list[list[list[str]]] = []
    inside = False
    for token in tokens:
        if token.type in ("table_open", "table_close"):
            inside = token.type == "table_open"
            tables += [[]] if inside else []
        elif inside and token.type == "tr_open":
            tables[-1].append([])
        elif inside and token.type == "inline":
            tables[-1][-1].append(_inline_text(token))
    return tables


def check_report(markdown: str, labels: list[str], names: list[str], error: str, commands: list[str], other: str) -> None:
    """The report's structure survived the hostile values, and each reads back literally."""
    assert not CONTROL.search(markdown), "a control character reached report.md"
    tokens = PARSER.parse(markdown)
    assert not [t for t in tokens if t.type == "html_block"], "raw HTML block"
    inline = [child for t in tokens if t.type == "inline" for child in t.children or []]
    assert not [t for t in inline if t.type == "html_inline"], "raw HTML inline"

    headings = [(t.tag, _inline_text(tokens[i + 1])) for i, t in enumerate(tokens) if t.type == "heading_open"]
    date = one_line(one_line(other)[:10])  # the run's start, also hostile here
    assert headings[0] == ("h1", f"Decision report: {one_line(other)}" + (f" ({date})" if date else ""))
    assert {text for tag, text in headings if tag == "h2"} == SECTIONS
    assert [tag for tag, _ in headings].count("h1") == 1
    assert all(text.startswith(("Confusion matrix of ", "Test examples ")) for tag, text in headings if tag == "h3")

    fences = [t for t in tokens if t.type in ("fence", "code_block")]
    assert len(fences) == 1 and fences[0].info == "sh"
    assert fences[0].content == "\n".join(strip_control(command) for command in commands) + "\n"

    lines = markdown.splitlines()
    for table in (t for t in tokens if t.type == "table_open"):  # every row has as many cell separators as its header
        separators = {len(re.findall(r"(?<!\\)\|", line)) for line in lines[table.map[0] : table.map[1]]}
        assert len(separators) == 1, lines[table.map[0] : table.map[1]]
    tables = _tables(tokens)
    shown = [one_line(label) for label in labels]
    leaderboard = next(table for table in tables if table[0][:2] == ["#", "strategy"])
    assert {row[1] for row in leaderboard[1:] if row[0]} == {one_line(name) for name in names[:3]}
    per_class = next(table for table in tables if table[0][:2] == ["class", "support"])
    assert [row[0] for row in per_class[1:]] == shown and per_class[0][2:] == [one_line(n) for n in (names[2], names[1], names[0])]
    confusion = next(table for table in tables if table[0][0].startswith("gold"))
    assert confusion[0][1:] == shown and [row[0] for row in confusion[1:]] == shown
    references = next(table for table in tables if table[0] == ["system", "metric", "value", "source"])
    assert references[1] == [one_line(other), one_line(other), "0.5", one_line(other)]

    spans = {child.content for child in inline if child.type == "code_inline"}
    assert one_line(names[3]) in spans, "the failed trial's name lost its code span"
    assert one_line(f"RuntimeError: {first_line(error)}") in spans, "the error message lost its code span"


NAMED_EXAMPLES = {
    "labels": ["<b>x</b>", "a|b", "$x^2$"],
    "names": ["<script>alert(1)</script>", "lora[r=4] | `x`", "[/red]*emph*_x_", "``double`` backticks"],
    "error": "failed at ``x`` with `y` and <img src=x onerror=alert(1)>\nsecond line \x1b[31m",
    "commands": ["slmbench run --task x --set 'a=```'", "```\n# Injected heading\n```", "~~~", "bell\x07 escape\x1b[2J"],
    "texts": ["<b>bold</b> | pipe", "line\nbreak # heading", "\x1b[31mred\x07", "`code` and ``more``"],
    "other": "# heading? <i>no</i> | \x1b[0m ``x``",
}


def test_the_issue_examples_render_as_literal_text(tmp_path: Path) -> None:
    run_dir = hostile_run(tmp_path, **NAMED_EXAMPLES)
    markdown = render_report(run_dir).read_text()
    kept = {key: NAMED_EXAMPLES[key] for key in ("labels", "names", "error", "commands", "other")}
    check_report(markdown, **kept)
    count("accepted", "report", None)
    assert "\x1b" not in markdown and "\x07" not in markdown
    assert "<b>" not in PARSER.render(markdown) and "<script>" not in PARSER.render(markdown)


HOSTILE_CHARS = st.text(alphabet=st.sampled_from(list("<>&|`*_[]()#$!~\\{}\n\t\x1b\x07\x00 abc-:.=/\"'")), min_size=1, max_size=14)


def _distinct_shown(values: list[str]) -> bool:
    shown = [one_line(value) for value in values]
    return all(shown) and len(set(shown)) == len(shown)


@settings(max_examples=15, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=st.lists(HOSTILE_CHARS, min_size=3, max_size=3).filter(_distinct_shown),
    names=st.lists(HOSTILE_CHARS, min_size=4, max_size=4).filter(_distinct_shown),
    error=HOSTILE_CHARS,
    commands=st.lists(HOSTILE_CHARS, min_size=1, max_size=3),
    texts=st.lists(HOSTILE_CHARS, min_size=1, max_size=4),
    other=HOSTILE_CHARS.filter(lambda value: one_line(value) != ""),
)
def test_generated_hostile_values_never_change_the_report_structure(labels, names, error, commands, texts, other):
    with tempfile.TemporaryDirectory() as folder:
        run_dir = hostile_run(Path(folder), labels, names, error, commands, texts, other)
        markdown = render_report(run_dir).read_text()
    try:
        check_report(markdown, labels, names, error, commands, other)
    except AssertionError:
        count("wrongly accepted", "report", True)
        raise
    count("accepted", "report", True)


def test_wrong_examples_show_hostile_texts_literally(tmp_path: Path) -> None:
    run_dir = hostile_run(tmp_path, **NAMED_EXAMPLES)
    markdown = render_report(run_dir).read_text()
    table = next(t for t in _tables(PARSER.parse(markdown)) if t[0][0] == "test text")
    expected = {shorten(text, MAX_TEXT_CHARS) for text in NAMED_EXAMPLES["texts"]}
    assert {row[0] for row in table[1:]} <= expected
    count("accepted", "report", None)
