"""Config files of the training components: TOML reading with errors that name file and key, override
merging and flattening to MLflow params. One definition each; every `load_*_config` goes through here."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
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


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied: nested dicts merge key by key, None leaves a key as it is.

    Neither input is modified.
    """
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    cls: type[ConfigT], path: Path | None, *, default: Path, what: str, overrides: Mapping[str, Any]
) -> ConfigT:
    """`cls` from the TOML file `path` (the packaged `default` when None) merged with `overrides`.

    An explicit `path` must exist; a missing packaged default means the class defaults.

    Raises
    ------
    InvalidInputError
        Unreadable file, bad TOML, or values the config rejects (the message names file and key).
    """
    if path is None:
        path = default
        data = read_toml(path, what=what) if path.exists() else {}
    else:
        data = read_toml(path, what=what)
    return validate_config(cls, merge_overrides(data, overrides), path=path, what=what)


def flatten_params(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"als.factors": 64, ...}``: a config (pydantic model or dict) flattened with dots for MLflow.

    Lists of tables (policy rules) become JSON text, cut to MLflow's 500 characters; other values
    are kept as they are (MLflow turns them to text).
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.update(flatten_params(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
        out[prefix] = json.dumps(value)[:500]
    else:
        out[prefix] = value
    return out


__all__ = ["flatten_params", "load_config", "merge_overrides", "read_toml", "validate_config"]
