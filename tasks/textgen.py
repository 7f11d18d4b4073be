"""Reading generated text lists (synthesizer and augmenter outputs) and the quality gates on them.

Every rejection is counted by reason, never silent: a refusal is a failed generation, not a query;
prose and code fences around the JSON are stripped; a truncated array salvages its complete items;
a numbered list without JSON is read line by line.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import json_repair

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.S)
_NUMBERING = re.compile(r"^\s*(?:[-*•·]|\d{1,3}[.、)）:：]|[（(]\d{1,3}[)）]|第[一二三四五六七八九十\d]+[条个、.])\s*")
_QUOTES = "\"'“”‘’「」『』《》"
_CJK = re.compile(r"[\u4e00-\u9fff]")
REFUSAL_MARKERS = ("我不能", "我无法", "抱歉", "对不起", "作为一个ai", "作为ai", "我不会提供", "i can't", "i cannot",
                   "i'm sorry", "不能满足", "无法满足", "不便提供")


@dataclass
class TextList:
    items: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def _clean_item(item: str) -> str:
    item = _NUMBERING.sub("", item.strip())
    return item.strip().strip(_QUOTES).strip()


def _array_items(text: str) -> list[str] | None:
    """Complete string items of the first JSON array in text (salvaging a truncated one)."""
    start = text.find("[")
    if start < 0:
        return None
    body = text[start:]
    end = body.rfind("]")
    if end > 0:
        try:
            data = json.loads(body[: end + 1])
            if isinstance(data, list):
                return [str(x) for x in data if isinstance(x, (str, int, float, dict))]
        except ValueError:
            pass
    # Truncated or broken: keep only items whose closing quote arrived.
    items = re.findall(r'"((?:[^"\\]|\\.)*)"\s*(?=[,\]])', body)
    if items:
        return [json.loads(f'"{s}"') for s in items]
    try:
        data = json_repair.loads(body)
    except (ValueError, RecursionError):
        return None
    return [str(x) for x in data] if isinstance(data, list) else None


def parse_text_list(text: str | None, *, min_chars: int = 6, max_chars: int = 600) -> TextList:
    out = TextList()
    if text is None or not text.strip():
        out.rejected["empty_output"] += 1
        return out
    lowered = text.strip().lower()
    if "[" not in text and any(m in lowered[:40] for m in REFUSAL_MARKERS):
        out.rejected["refusal"] += 1
        return out
    body = "\n".join(m.group(1) for m in _FENCE.finditer(text)) or text
    items = _array_items(body)
    if items is None:
        # No JSON: a numbered or bulleted list, one item per line; a lone paragraph is prose, not a list.
        lines = [line for line in body.splitlines() if line.strip()]
        numbered = [line for line in lines if _NUMBERING.match(line)]
        if len(numbered) >= 2:
            items = numbered
        else:
            out.rejected["no_list_found"] += 1
            return out
    seen: set[str] = set()
    for raw in items:
        item = _clean_item(raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False))
        reason = gate_text(item, min_chars=min_chars, max_chars=max_chars)
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
    if any(text.lower().startswith(m) for m in REFUSAL_MARKERS):
        return "refusal"
    return None
