"""Reading the TOML config files of the training components, with errors that name file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from features.errors import InvalidInputError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def read_toml(path: Path, *, what: str) -> dict[str, Any]:
    """The parsed TOML file `path`.

    Raises
    ------
    InvalidInputError
        The file cannot be read or is not valid TOML (the message names the file and `what`).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the {what} config ({exc})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid TOML ({exc})") from exc


def validate_config(cls: type[ConfigT], data: dict[str, Any], *, path: Path, what: str) -> ConfigT:
    """``cls.model_validate(data)``; a rejected value becomes one message naming each dotted key.

    Raises
    ------
    InvalidInputError
        ``<path>: invalid <what> config: als.factors: Input should be ... (got 0); ...``.
    """
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            + ("" if err["type"] == "missing" else f" (got {err['input']!r})")
            for err in exc.errors(include_url=False)
        )
        raise InvalidInputError(f"{path}: invalid {what} config: {problems}") from exc


__all__ = ["read_toml", "validate_config"]
