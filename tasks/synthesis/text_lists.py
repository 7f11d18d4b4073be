"""Reading generated text (synthesizer, augmenter and translator outputs) and the quality gates on it.

Every rejection is counted by reason, never silent: a refusal is a failed generation, not a query;
reasoning blocks, prose and code fences around the JSON are stripped; a truncated array salvages its
complete items and counts the cut one; a numbered list without JSON is read line by line; an item
that is not Chinese, too short, too long, a refusal or a repeat is dropped with its reason.

Reasons (the keys of `TextList.rejected`), per output: `empty_output`, `refusal`, `no_list_found`,
`empty_list`, `truncated_reasoning`; per item: `truncated_item`, `not_text`, `empty_item`, `too_short`,
`too_long`, `not_chinese`, `refusal`, `multiline`, `duplicate_in_output`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import json_repair

from libra.tasks.core.json_text import first_json

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)(?:```|$)", re.S)
# List numbering at the start of an item: "1." "1、" "(1)" "第1条" "一、" "问题1：" "Q1:" "- " "**1.**".
# Not "第一个…", which starts real questions.
# A digit after the separator means a number, not numbering ("1.5倍").
_NUMBERING = re.compile(
    r"^\s*(?:\*\*)?(?:[-*•·]\s|\d{1,3}[.、)）:：](?!\d)|[（(]\d{1,3}[)）]|第[一二三四五六七八九十\d]+(?:条[、.．:：]?|[、.．:：])"
    r"|[一二三四五六七八九十]{1,3}[、.．](?!\d)|(?:问题|Q|q)\s*\d{1,3}\s*[.、:：)）])(?:\*\*)?\s*"
)
_QUOTES = "\"'“”‘’「」『』《》"
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SPACES = re.compile(r"[ \t\u3000]+")
# Refusals: the model declining the task. Matched on the opening of an output or an item, so a query
# that merely contains 不能 (e.g. "我不能去上班了，怎么…") is not one.
_REFUSAL = re.compile(
    r"^\W*(?:(?:很|非常)?抱歉|对不起|不好意思|sorry)?\W*(?:但是?|不过)?\W*"
    r"(?:作为(?:一[个名])?(?:AI|人工智能|语言模型|AI助手)[^，,。.]{0,12}[，,]?\s*)?我?"
    r"(?:不能|无法|不会|不可以|拒绝|没法)(?:为你|为您|帮你|帮您|帮助|协助|提供|生成|编写|回答|满足|创作|完成|参与|翻译|改写|处理|这样做|做到)"
    r"|^\W*(?:i\s*(?:can'?t|cannot|won'?t|am\s+(?:not\s+able|unable)|'m\s+(?:not\s+able|unable|sorry))"
    r"|i\s+am\s+sorry|sorry,?\s+(?:but\s+)?i|as\s+an\s+ai)",
    re.I,
)
_APOLOGY = re.compile(r"\W*(?:(?:很|非常)?抱歉|对不起|不好意思|sorry|i'?m sorry|i apologi[sz]e)", re.I)
_ITEM_KEYS = ("问题", "query", "question", "text", "内容", "prompt", "改写", "译文")


def looks_like_refusal(text: str) -> bool:
    """True when the text opens by declining the task (Chinese or English)."""
    return bool(_REFUSAL.search(text.strip()[:80]))


def _declines(output: str) -> bool:
    """A whole output without a list that refuses, or just opens with an apology."""
    return looks_like_refusal(output) or bool(_APOLOGY.match(output.strip()))


@dataclass
class TextList:
    items: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def _clean_item(item: str) -> str:
    item = _NUMBERING.sub("", item.strip())
    item = item.strip().strip(_QUOTES).strip()
    return _SPACES.sub(" ", item)


def _item_text(value: Any) -> str | None:
    """A list element as text: strings as they are, objects by a known key or their one string value."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in _ITEM_KEYS:
            if isinstance(value.get(key), str):
                return value[key]
        strings = [v for v in value.values() if isinstance(v, str)]
        return strings[0] if len(strings) == 1 else None
    return None


def _numbers_only(value: Any) -> bool:
    """"[10]" in prose ("以下是[10]个问题") is not the list."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, int | float) for v in value)


def _decode_first(text: str, opener: str) -> Any:
    """The first JSON value starting at an `opener` that decodes (trailing prose is ignored)."""
    found = first_json(text, opener, accept=lambda v: not (opener == "[" and _numbers_only(v)))
    return found[1] if found else None


def _salvage_array(text: str) -> tuple[list[Any], int] | None:
    """(elements, cut-off items) of an array that does not decode as JSON."""
    start = re.search(r"\[\s*[\"'“{]", text)
    if start is None:
        return None
    body = text[start.start():]
    if "\"" not in body and "“" in body:  # typographic quotes used as JSON quotes
        body = body.replace("“", "\"").replace("”", "\"")
    if "]" not in body:
        # Truncated: keep only the items whose closing quote arrived.
        complete = list(re.finditer(r'"((?:[^"\\]|\\.)*)"\s*(?:,|\Z)', body))
        items = [json.loads(f'"{m.group(1)}"') for m in complete]
        tail = body[complete[-1].end():] if complete else body[1:]
        return items, int(bool(tail.strip(" \n\t,")))
    try:
        data = json_repair.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, list) and data:
        return data, 0
    items = re.findall(r'"((?:[^"\\]|\\.)*)"\s*(?=[,\]])', body)
    return ([json.loads(f'"{s}"') for s in items], 0) if items else None


def _find_elements(text: str) -> tuple[list[Any], int] | None:
    """The list inside a generated text: a JSON array, a salvaged one, or an object's values."""
    array = _decode_first(text, "[")
    if isinstance(array, list):
        return array, 0
    salvaged = _salvage_array(text)
    if salvaged is not None:
        return salvaged
    obj = _decode_first(text, "{")
    if isinstance(obj, dict):  # {"问题": "…"} is one item; {"1": "…", "2": "…"} a list of them
        keyed = next((obj[k] for k in _ITEM_KEYS if isinstance(obj.get(k), str)), None)
        return ([keyed] if keyed is not None else list(obj.values())), 0
    stripped = text.strip()
    if stripped.startswith("\"") and stripped.endswith("\""):  # a lone JSON string
        try:
            return [json.loads(stripped)], 0
        except ValueError:
            return None
    return None


def strip_reasoning(text: str) -> tuple[str, bool]:
    """Text without `<think>` blocks; True when a block never closed (the answer was cut off inside it)."""
    text = _THINK.sub("", text)
    opened = re.search(r"<think>", text, re.I)
    if opened:
        return text[: opened.start()], True
    return text, False


def parse_text_list(text: str | None, *, min_chars: int = 6, max_chars: int = 600,
                    single_line: bool = False) -> TextList:
    """The items of a generated list, each through `gate_text`, and every rejection by reason."""
    out = TextList()
    if text is None or not text.strip():
        out.rejected["empty_output"] += 1
        return out
    text, cut_in_reasoning = strip_reasoning(text)
    if not text.strip():
        out.rejected["truncated_reasoning" if cut_in_reasoning else "empty_output"] += 1
        return out
    # Each code fence is read on its own (a model may split its list over several); else the whole text.
    blocks = [m.group(1) for m in _FENCE.finditer(text)] or [text]
    found = [f for f in map(_find_elements, blocks) if f is not None]
    if not found:
        # No JSON: a numbered or bulleted list, one item per line; a lone paragraph is prose, not a list.
        lines = [line for b in blocks for line in b.splitlines() if line.strip()]
        numbered = [line for line in lines if _NUMBERING.match(line)]
        if len(numbered) >= 2 or (numbered and len(numbered) == len(lines)):
            found = [(numbered, 0)]
        else:
            out.rejected["refusal" if _declines(text) else "no_list_found"] += 1
            return out
    elements = [e for f in found for e in f[0]]
    truncated = sum(f[1] for f in found)
    if truncated:
        out.rejected["truncated_item"] += truncated
    if not elements and not truncated:
        out.rejected["refusal" if _declines(text) else "empty_list"] += 1
        return out
    seen: set[str] = set()
    for raw in elements:
        value = _item_text(raw)
        if value is None:
            out.rejected["not_text"] += 1
            continue
        item = _clean_item(value)
        reason = gate_text(item, min_chars=min_chars, max_chars=max_chars)
        if reason is None and single_line and "\n" in item:
            reason = "multiline"
        if reason is None and item in seen:
            reason = "duplicate_in_output"
        if reason:
            out.rejected[reason] += 1
            continue
        seen.add(item)
        out.items.append(item)
    return out


def gate_text(text: str, *, min_chars: int = 6, max_chars: int = 600) -> str | None:
    """The reason a generated text is rejected, or None when it passes."""
    if not text:
        return "empty_item"
    if len(text) < min_chars:
        return "too_short"
    if len(text) > max_chars:
        return "too_long"
    cjk = len(_CJK.findall(text))
    if cjk < max(2, 0.3 * len(re.sub(r"\s", "", text))):
        return "not_chinese"
    if looks_like_refusal(text):
        return "refusal"
    return None


@dataclass
class Translation:
    text: str | None
    reason: str | None  # why there is no text; None when there is


_ENGLISH_REFUSAL = re.compile(r"^\W*(?:i\s*(?:can'?t|cannot|won'?t)|i'?m\s+sorry|i\s+am\s+sorry|sorry|as\s+an\s+ai)", re.I)


def parse_translation(output: str | None, original: str, *, max_chars: int = 8000) -> Translation:
    """The Chinese text of a translator answer (`{"译文": …}`), or the reason it is rejected.

    A translated refusal is a refusal only when the original was not one already: the English
    responses of safety sets are often refusals, and their translation must be kept.
    """
    if output is None or not output.strip():
        return Translation(None, "empty_output")
    output, cut_in_reasoning = strip_reasoning(output)
    if not output.strip():
        return Translation(None, "truncated_reasoning" if cut_in_reasoning else "empty_output")
    obj = _decode_first(output, "{")
    if not isinstance(obj, dict):
        try:
            obj = json_repair.loads(output[output.index("{"):]) if "{" in output else None
        except (ValueError, RecursionError):
            obj = None
    value = _item_text(obj) if isinstance(obj, dict) else None
    if value is None:
        refused = looks_like_refusal(output) and not _ENGLISH_REFUSAL.search(original)
        return Translation(None, "refusal" if refused else "no_translation_found")
    value = value.strip()
    if not value:
        return Translation(None, "empty_item")
    if len(value) > max_chars:
        return Translation(None, "too_long")
    cjk = len(_CJK.findall(value))
    if cjk < max(1, 0.2 * len(re.sub(r"\s", "", value))):
        return Translation(None, "not_chinese")
    if looks_like_refusal(value) and not _ENGLISH_REFUSAL.search(original):
        return Translation(None, "refusal")
    return Translation(value, None)
