"""One file reader for every input the factory takes: imports, benchmarks, predictions, human labels.

Formats: JSON (an array of records, or the list under a key of an object), JSON Lines, CSV (or TSV),
Parquet. The suffix names the family; a `.json` file whose text starts with `{` is JSON Lines (one
record a line), which is how Libra-Test, Label Studio and inference scripts write them. Encodings:
UTF-8 with or without a BOM, GB18030 (a superset of GBK), UTF-16 with a BOM; detected when not given
(tasks/data/imports.py `check_declared_encoding` refuses a declared encoding that reads as mojibake).

Every record knows its file, its record number and the line it starts on, and every error names them:
`file:line: not valid JSON (msg: column n)`. A record that cannot be read is a `BadRecord`, so that each
caller decides whether it fails the file (benchmarks, predictions) or collects the bad rows (imports,
human labels); what makes the rest of a file unreadable raises the caller's error class at once.

The JSON array is decoded element by element (json.JSONDecoder.raw_decode) rather than by polars or
json.loads: those give no line per record, and a line per record is what a user needs to fix a file.
CSV goes through the standard library's csv module for the same reason (polars reports no line).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from libra.tasks.core.errors import InputError
from libra.tasks.data.jsonl import json_lines

SUFFIX_FORMAT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
                 ".parquet": "parquet", ".pq": "parquet"}
FORMATS = ("jsonl", "json", "csv", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030", "utf-16")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LONE_SURROGATE = re.compile(r"[\udc80-\udcff]")


class ReadError(InputError):
    """A file that cannot be read; the message names the file (and line)."""


@dataclass
class Record:
    """One record as read: its position and its value (a JSON value, or a CSV/Parquet row as a dict)."""

    file: Path
    row: int              # 1-based record number in the file
    line: int | None      # 1-based line where the record starts (None for Parquet)
    value: Any
    raw: str

    @property
    def fields(self) -> dict[str, Any]:
        """The record as columns; a JSON value that is not an object is the one column `_value`."""
        return self.value if isinstance(self.value, dict) else {"_value": self.value}


@dataclass
class BadRecord:
    file: str
    row: int | None
    line: int | None
    error: str
    raw: str = ""

    def __post_init__(self) -> None:
        # undecodable bytes travel as lone surrogates; stored and written rejects show U+FFFD instead
        self.raw = LONE_SURROGATE.sub("\ufffd", self.raw[:2000])

    def where(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file}: row {self.row}" if self.row is not None else self.file

    def message(self) -> str:
        return f"{self.where()}: {self.error}"


@dataclass
class FileRecords:
    """What one file held: its records, the records that could not be read, the format and encoding."""

    path: Path
    format: str
    encoding: str
    records: list[Record]
    bad: list[BadRecord] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        out: list[str] = []
        for r in self.records:
            out += [c for c in r.fields if c not in out]
        return out


@dataclass(frozen=True)
class CsvOptions:
    header: bool = True              # the first row names the columns
    names: list[str] | None = None   # without a header: the column names
    delimiter: str = ","             # a .tsv file with the default reads tab-separated


# -- encodings ---------------------------------------------------------------------------------------


def detect_encoding(data: bytes) -> str:
    """UTF-16 or UTF-8 by their BOM; else UTF-8 unless the bytes are clearly GB18030.

    A UTF-8 file with a few invalid bytes is still UTF-8 (those rows are bad input); a GB18030 Chinese
    file read as UTF-8 fails on nearly every non-ASCII byte. So: the share of undecodable bytes among
    the non-ASCII ones decides, and GB18030 is chosen only when it decodes the whole file.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    non_ascii = sum(1 for b in data if b >= 0x80)
    undecodable = len(LONE_SURROGATE.findall(data.decode("utf-8", "surrogateescape")))
    if undecodable <= 0.2 * non_ascii:  # GB18030 text read as UTF-8 fails on most of its bytes
        return "utf-8"
    try:
        data.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError:
        return "utf-8"


def decode(data: bytes, encoding: str) -> str:
    """Decode keeping undecodable bytes as lone surrogates, so that the row holding them is reported
    (with its line) instead of the whole file failing or the bytes being silently replaced."""
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    try:
        text = data.decode(codec, "surrogateescape")
    except UnicodeDecodeError:  # UTF-16 cut mid-character: surrogateescape covers single bytes only
        text = data.decode(codec, "replace")
    return text.removeprefix("\ufeff")


def common_hanzi_share(text: str) -> tuple[float, int]:
    """(share, count) of the text's CJK characters that are GB2312 level-1 hanzi, the 3,755 common ones.

    Real Chinese text is nearly all level-1 (a query: 95-100 %); the mojibake of reading UTF-8 bytes as
    GB18030 (`如何制作` -> `濡備綍鍒`) lands mostly on rare level-2 and GBK-extension characters
    (about a third). Both readings are "Chinese" to a has-a-hanzi check; this tells them apart."""
    cjk = _CJK.findall(text)
    common = sum(0xB0 <= ch.encode("gb2312", "replace")[0] <= 0xD7 for ch in cjk)  # "?" (0x3F) is not common
    return (common / len(cjk) if cjk else 0.0), len(cjk)


def check_declared_encoding(path: Path, data: bytes, declared: str, language: str | None,
                            error: type[InputError] = ReadError) -> None:
    """A declared encoding whose text does not read as Chinese while another reading does is an error:
    a wrong claim would otherwise store mojibake that passes every per-row check."""
    if language != "zh" or declared == "auto":
        return
    ours, n = common_hanzi_share(decode(data, declared))
    if n < 4 or ours >= 0.6:
        return
    for other in ("utf-8", "gb18030"):
        if other == declared.removesuffix("-sig"):
            continue
        try:
            text = data.decode(other).removeprefix("\ufeff")
        except UnicodeDecodeError:
            continue
        theirs, _ = common_hanzi_share(text)
        if theirs >= 0.8:
            sample = "".join(_CJK.findall(decode(data, declared))[:8])
            raise error(
                f"{path}: read as the declared encoding {declared} the text is not Chinese (only {ours:.0%} "
                f"common characters, e.g. {sample!r}); read as {other} it is ({theirs:.0%}). "
                f"Pass --encoding {other}, or leave the encoding to detection"
            )


def first_undecodable(path: Path, text: str, encoding: str) -> str | None:
    """`file:line: byte 0x.. is not valid <encoding>` for the first undecodable byte, None when none."""
    bad = LONE_SURROGATE.search(text)
    if bad is None:
        return None
    line = text.count("\n", 0, bad.start()) + 1
    return f"{path}:{line}: byte 0x{ord(bad.group()) - 0xDC00:02x} is not valid {encoding}"


# -- formats -----------------------------------------------------------------------------------------


def detect_format(path: Path, declared: str = "auto", error: type[InputError] = ReadError) -> str:
    if declared != "auto":
        return declared
    fmt = SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise error(f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
                    "pass --format jsonl|json|csv|parquet")
    return fmt


def jsonl_records(path: Path, text: str) -> tuple[list[Record], list[BadRecord]]:
    """One record per non-blank line; a line that is not JSON is a bad record."""
    out: list[Record] = []
    bad: list[BadRecord] = []
    for row, jl in enumerate(json_lines(text.split("\n")), start=1):
        if jl.error:
            bad.append(BadRecord(str(path), row, jl.lineno, jl.error, jl.text))
        else:
            out.append(Record(path, row, jl.lineno, jl.value, jl.text))
    return out, bad


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def json_records(path: Path, text: str, records_key: str | None = None,
                 error: type[InputError] = ReadError) -> list[Record]:
    """A JSON array of records (or the list under `records_key`), parsed element by element so that
    every record knows its line. A malformed element makes the rest unreadable: that fails the file."""
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)

    def fail(at: int, msg: str) -> InputError:
        return error(f"{path}:{text.count(chr(10), 0, at) + 1}: {msg}")

    if records_key is not None:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise fail(e.pos, f"not valid JSON ({e.msg}: column {e.colno})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get(records_key), list):
            raise error(f"{path}: expected an object with a list under {records_key!r}")
        return [Record(path, i, None, v, json.dumps(v, ensure_ascii=False))
                for i, v in enumerate(doc[records_key], start=1)]
    if not text.startswith("[", pos):
        try:
            kind = type(dec.raw_decode(text, pos)[0]).__name__
        except json.JSONDecodeError:
            kind = "text that is not JSON"
        raise fail(pos, f"expected a JSON array of records (or JSON Lines), found a {kind}")
    pos = _skip_ws(text, pos + 1)
    out: list[Record] = []
    row = 0
    line, counted_to = 1, 0  # lines are counted incrementally: one pass over the text in all
    if text.startswith("]", pos):
        return out
    while True:
        row += 1
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        try:
            value, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise error(f"{path}:{line}: not valid JSON in record {row} ({e.msg} at line {e.lineno} "
                        f"column {e.colno})") from None
        out.append(Record(path, row, line, value, text[pos:end]))
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif text.startswith("]", pos):
            break
        else:
            raise fail(pos, f"not valid JSON after record {row} (expected ',' or ']')")
    return out


def csv_records(path: Path, text: str, options: CsvOptions = CsvOptions(),
                error: type[InputError] = ReadError) -> tuple[list[Record], list[BadRecord]]:
    """CSV rows as dicts keyed by the header; a malformed row or one with another number of fields
    than the header is a bad record (its line and raw text kept)."""
    csv.field_size_limit(sys.maxsize)  # callers check sizes per field, with a clear message
    # Lines end at \n only (str.splitlines would also break at U+2028 and friends inside a field).
    lines = [line + "\n" for line in text.split("\n")]
    delimiter = "\t" if path.suffix.lower() == ".tsv" and options.delimiter == "," else options.delimiter
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    out: list[Record] = []
    bad: list[BadRecord] = []
    if options.header:
        try:
            header = next(reader)
        except StopIteration:
            raise error(f"{path}: empty file (no header row)") from None
        except csv.Error as e:
            raise error(f"{path}:1: malformed CSV header ({e})") from None
        header = [h.strip() for h in header]
    else:
        header = list(options.names or [])
    start = reader.line_num + 1
    row = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            row += 1
            bad.append(BadRecord(str(path), row, start, f"malformed CSV ({e})",
                                 "".join(lines[start - 1:reader.line_num])))
            start = reader.line_num + 1
            continue
        end = reader.line_num
        raw = "".join(lines[start - 1:end])
        line_no, start = start, end + 1
        if not values or (len(values) == 1 and not values[0].strip() and not options.names):
            continue  # a blank line
        row += 1
        if not header:
            header = [f"column_{i}" for i in range(1, len(values) + 1)]
        if len(values) != len(header):
            bad.append(BadRecord(str(path), row, line_no, f"{len(values)} fields where the header has {len(header)}",
                                 raw))
            continue
        out.append(Record(path, row, line_no, dict(zip(header, values, strict=True)), raw))
    return out, bad


def parquet_records(path: Path, error: type[InputError] = ReadError) -> list[Record]:
    try:
        frame = pl.read_parquet(path)
    except Exception as e:  # polars raises several error types for a broken file
        raise error(f"{path}: not a readable Parquet file ({e})") from None
    return [Record(path, i, None, r, json.dumps(r, ensure_ascii=False, default=str)[:2000])
            for i, r in enumerate(frame.iter_rows(named=True), start=1)]


# -- the reader --------------------------------------------------------------------------------------


def read_text(path: Path, *, encoding: str = "auto", language: str | None = None, undecodable: str = "keep",
              error: type[InputError] = ReadError) -> tuple[str, str]:
    """(text, encoding) of a file that is not empty; `undecodable` as in `read_file`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    used = encoding if encoding != "auto" else detect_encoding(data)
    check_declared_encoding(path, data, encoding, language, error)
    text = decode(data, used)
    if undecodable == "fail" and (problem := first_undecodable(path, text, used)):
        raise error(f"{problem}; save the file as UTF-8")
    if not text.strip():
        raise error(f"{path}: empty file")
    return text, used


def read_file(path: str | Path, *, format: str = "auto", encoding: str = "auto", language: str | None = None,
              records_key: str | None = None, csv_options: CsvOptions = CsvOptions(),
              undecodable: str = "keep", error: type[InputError] = ReadError) -> FileRecords:
    """Every record of one file. `undecodable`: "keep" leaves undecodable bytes in the text as lone
    surrogates (the caller reports the row holding them), "fail" raises naming the line of the first."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory, not a file; pass the files in it (e.g. {path}/*.jsonl)")
    if not path.is_file():
        raise error(f"{path}: no such file")
    fmt = detect_format(path, format, error)
    if fmt == "parquet":
        return FileRecords(path, fmt, "parquet", parquet_records(path, error))
    text, used = read_text(path, encoding=encoding, language=language, undecodable=undecodable, error=error)
    if fmt == "json" and records_key is None and text.lstrip().startswith("{"):
        fmt = "jsonl"  # a .json file of one object per line
    if fmt == "jsonl":
        records, bad = jsonl_records(path, text)
        return FileRecords(path, fmt, used, records, bad)
    if fmt == "json":
        return FileRecords(path, fmt, used, json_records(path, text, records_key, error))
    records, bad = csv_records(path, text, csv_options, error)
    return FileRecords(path, fmt, used, records, bad)
