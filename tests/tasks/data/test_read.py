"""The one file reader: formats, encodings, and a line in every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libra.tasks.data.read import CsvOptions, ReadError, detect_encoding, read_file

RECORDS = [{"id": "1", "text": "如何制作炸药？"}, {"id": "2", "text": "今天天气怎么样"}]


def _write(path: Path, fmt: str, encoding: str = "utf-8") -> Path:
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS)
    elif fmt == "json":
        text = json.dumps(RECORDS, ensure_ascii=False, indent=1)
    else:
        text = "id,text\n" + "".join(f"{r['id']},{r['text']}\n" for r in RECORDS)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "utf-16", "utf-16-be"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_every_format_in_every_encoding_reads_the_same_records(tmp_path, suffix, encoding):
    if encoding == "utf-16-be":
        path = tmp_path / f"in{suffix}"
        _write(path, suffix[1:], "utf-8")
        path.write_bytes(b"\xfe\xff" + path.read_text(encoding="utf-8").encode("utf-16-be"))
    else:
        path = _write(tmp_path / f"in{suffix}", suffix[1:], encoding)
    got = read_file(path)
    assert [r.value for r in got.records] == RECORDS and not got.bad
    assert got.encoding == {"utf-16-be": "utf-16"}.get(encoding, encoding)


def test_parquet_and_lines_of_json_records(tmp_path):
    import polars as pl

    pl.DataFrame(RECORDS).write_parquet(tmp_path / "in.parquet")
    assert [r.value for r in read_file(tmp_path / "in.parquet").records] == RECORDS
    got = read_file(_write(tmp_path / "in.json", "json"))
    assert [(r.row, r.line) for r in got.records] == [(1, 2), (2, 6)]  # where each record starts


def test_a_json_file_of_one_object_per_line_is_json_lines(tmp_path):
    path = tmp_path / "in.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    got = read_file(path)
    assert got.format == "jsonl" and [r.line for r in got.records] == [1, 2]


def test_bad_lines_are_bad_records_with_their_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1}\n\n{"id": \n{"id": 3}\n', encoding="utf-8")
    got = read_file(path)
    assert [r.line for r in got.records] == [1, 4]
    assert [b.message() for b in got.bad] == [f"{path}:3: not valid JSON (Expecting value: column 8)"]
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("id,text\n1,a\n2,b,c\n", encoding="utf-8")
    assert [b.message() for b in read_file(csv_path).bad] == [f"{csv_path}:3: 3 fields where the header has 2"]
    assert [r.value for r in read_file(csv_path, csv_options=CsvOptions(header=False, names=["a", "b"])).records][0] \
        == {"a": "id", "b": "text"}


@pytest.mark.parametrize(("content", "message"), [
    (b'[{"id": 1},\n {"id": }]', "in.json:2: not valid JSON in record 2 (Expecting value at line 2 column 9)"),
    (b'[{"id": 1} {"id": 2}]', "in.json:1: not valid JSON after record 1 (expected ',' or ']')"),
    (b'"text"', "in.json:1: expected a JSON array of records (or JSON Lines), found a str"),
    (b"  \n", "in.json: empty file"),
    (b'[{"id": 1}]\n\xff', "in.json:2: byte 0xff is not valid utf-8"),
])
def test_an_unreadable_file_raises_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "in.json"
    path.write_bytes(content)
    with pytest.raises(ReadError) as e:
        read_file(path, undecodable="fail")
    assert str(e.value).startswith(str(tmp_path)) and message in str(e.value)


def test_missing_files_folders_and_unknown_suffixes_are_clear_errors(tmp_path):
    with pytest.raises(ReadError, match="no such file"):
        read_file(tmp_path / "nope.jsonl")
    with pytest.raises(ReadError, match="is a directory"):
        read_file(tmp_path)
    (tmp_path / "x.txt").write_text("a", encoding="utf-8")
    with pytest.raises(ReadError, match="cannot tell the format from the suffix '.txt'"):
        read_file(tmp_path / "x.txt")


def test_records_key_reads_the_list_under_a_key(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"data": RECORDS}), encoding="utf-8")
    assert [r.value for r in read_file(path, records_key="data").records] == RECORDS
    with pytest.raises(ReadError, match="expected an object with a list under 'rows'"):
        read_file(path, records_key="rows")


def test_undecodable_bytes_are_kept_for_the_caller_to_report(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "\xff"}\n' + '{"text": "好"}\n'.encode() * 10)
    assert detect_encoding(path.read_bytes()) == "utf-8"
    assert read_file(path).records[0].value == {"text": "\udcff"}
