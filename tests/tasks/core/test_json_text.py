from libra.tasks.core.json_text import first_json, json_starts, json_value_at


def test_the_first_value_that_decodes_wins_and_trailing_prose_is_ignored():
    text = '好的 {broken 然后 {"答案": "安全"} 结束 ["x"]'
    assert first_json(text) == (text.index('{"'), {"答案": "安全"})
    assert first_json(text, "[") == (text.index('["'), ["x"])


def test_accept_skips_values_the_caller_does_not_want():
    text = '以下是[10]个问题: ["一", "二"]'
    found = first_json(text, "[", accept=lambda v: not all(isinstance(x, int) for x in v))
    assert found is not None and found[1] == ["一", "二"]


def test_literal_newlines_in_strings_decode_and_hostile_nesting_is_no_value():
    assert json_value_at('{"分析": "一\n二"}', 0) == ({"分析": "一\n二"}, 13)
    assert json_value_at("[" * 100_000, 0) is None
    assert first_json("no json here") is None


def test_starts_are_limited():
    assert json_starts("{{{{", limit=2) == [0, 1]
