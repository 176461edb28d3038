"""Typed configuration: YAML in, `--set key=value` overrides, validated pydantic models out.

Every job of the project (scenarios, training, the generator, serving) describes its settings
as a pydantic model with `extra="forbid"`, so an unknown key or an out-of-range value is
rejected with a message that names the field and what is allowed.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Iterable, TypeVar, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` as a string; read it as the float every user means (YAML 1.2 does)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A configuration a user gave is invalid; the message names the field and the allowed values."""


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=3` -> ("a.b", 3). The value is parsed as YAML, so numbers, lists and booleans work."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (dotted keys allowed)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    return key, load_yaml(raw) if raw.strip() else ""


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of `data` with each dotted `key=value` override set (creating nested dicts)."""
    result = _deep_copy(data)
    for text in overrides:
        key, value = parse_override(text)
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def validate(model: type[ModelT], data: dict, source: str = "config") -> ModelT:
    """Validate `data` into `model`, turning pydantic's errors into one readable ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model)) from None


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] | None = None,
                            prefix: tuple = ()) -> str:
    """One line per error, naming the field; an unknown key gets the closest known names of its
    section of `model` (whose fields sit under `prefix` in the error locations)."""
    lines = [f"invalid {source}:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown key{_did_you_mean(model, err['loc'], prefix)}")
        else:
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            lines.append(f"  {field}: {err['msg']}{shown}")
    return "\n".join(lines)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    candidates = get_args(annotation) or (annotation,)
    return [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def _did_you_mean(model: type[BaseModel] | None, loc: tuple, prefix: tuple) -> str:
    """ " (did you mean a, b?)" from the fields of the section holding `loc`, or ""."""
    if model is None or tuple(loc[:len(prefix)]) != tuple(prefix):
        return ""
    sections = [model]
    for part in loc[len(prefix):-1]:
        sections = [m for s in sections if part in s.model_fields for m in _models_in(s.model_fields[part].annotation)]
    known = sorted({name for s in sections for name in s.model_fields})
    near = difflib.get_close_matches(str(loc[-1]), known, n=3)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def load_config(model: type[ModelT], path: str | Path | None = None, overrides: Iterable[str] = (),
                base: dict | None = None) -> ModelT:
    """Load `model` from optional `base` dict, then YAML `path`, then `overrides`, and validate."""
    data = _deep_copy(base or {})
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
    data = apply_overrides(data, overrides)
    return validate(model, data, source=str(path) if path else model.__name__)


def _deep_copy(data: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _deep_merge(base: dict, top: dict) -> dict:
    merged = _deep_copy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_range(value: tuple, *, integer: bool) -> tuple:
    low, high = value
    if low < 0:
        raise ValueError(f"range low end must be >= 0, got [{low}, {high}]")
    if high < low:
        raise ValueError(f"range is empty: high {high} < low {low}")
    return (int(low), int(high)) if integer else (float(low), float(high))


# A closed interval [low, high] written in YAML as `[low, high]`.
FloatRange = Annotated[tuple[float, float], AfterValidator(lambda v: _check_range(v, integer=False))]
IntRange = Annotated[tuple[int, int], AfterValidator(lambda v: _check_range(v, integer=True))]


def validate_nested(model: type[ModelT], value: Any, loc: tuple) -> ModelT:
    """`value` validated as `model` from inside another model's validator, its errors located
    under `loc` of the outer model (so they name `training.actor_lr`, not `actor_lr`)."""
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        errors = [{"type": e["type"], "loc": (*loc, *e["loc"]), "input": e["input"],
                   **({"ctx": e["ctx"]} if "ctx" in e else {})} for e in exc.errors()]
        raise ValidationError.from_exception_data(exc.title, errors) from None
