"""`libra run <flow> --key value` options applied on top of a config section, validated like the file."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from libra.tasks.core.config import ConfigError

Section = TypeVar("Section", bound=BaseModel)


def with_overrides(section: Section, overrides: dict[str, str | None], list_keys: tuple[str, ...] = ()) -> Section:
    """A copy of `section` with the given options (strings from the command line; None = not given).
    Keys in list_keys take comma-separated lists; `auto` clears an optional value."""
    given: dict[str, object] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in list_keys:
            given[key] = [v.strip() for v in str(value).split(",") if v.strip()]
        elif str(value).lower() == "auto":
            given[key] = None
        else:
            given[key] = value
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as e:
        msgs = [f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()]
        raise ConfigError("invalid option: " + "; ".join(msgs)) from None
