"""Typed configs: dataclasses with help text, loaded from YAML and overridden from the command line.

Every stage describes its settings as a dataclass whose fields carry ``metadata={"help": ...}``. This
module turns nested dicts (from YAML) into those dataclasses, checking types and unknown keys, so a
mistake is reported with the dotted name of the field (``data.eval_fraction: ...``) instead of a
traceback deep inside a stage.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


MAX_INT = 2**31 - 1


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid; the message starts with the field's dotted name."""


def option(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with help text (shown by ``clampdpo ... --help`` and in the README)."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def check(condition: bool, name: str, message: str) -> None:
    """Raise ConfigError naming ``name`` unless ``condition`` holds; used in ``__post_init__``."""
    if not condition:
        raise ConfigError(f"{name}: {message}")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _coerce(value: Any, tp: Any, name: str) -> Any:
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}: must not be empty")
    tp = inner
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping of fields, got {type(value).__name__}")
        return from_dict(cast(type, tp), value, prefix=name)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {_coerce(k, key_tp, name): _coerce(v, val_tp, f"{name}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{name}: must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            integer = int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if abs(integer) > MAX_INT:  # no count, size or seed of ours is this large: a typo, caught here
            raise ConfigError(f"{name}: {integer} is out of range (at most {MAX_INT:,} in size)")
        return integer
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(number):  # .inf or .nan from YAML: no setting means that
            raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        if isinstance(value, bool):  # YAML reads a bare yes / no (and on / off) as a boolean
            return "yes" if value else "no"
        return str(value)
    if tp is Path:
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cast(Any, cls)) if f.init}
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key in renamed and key not in fields:  # a field's old name (a saved campaign, an old config file)
            key = renamed[key]
            if key in data:
                raise ConfigError(f"{name}: the old name of {key}, which is given too; keep one")
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{name}: unknown field{hint}; known: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(value, hints[key], name)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if prefix and not str(err).startswith(prefix + "."):
            raise ConfigError(f"{prefix}.{err}") from None
        raise


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-data view of a config (for YAML, MLflow params, manifests)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(obj)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the intermediate mappings."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {k} is not a section")
    node[keys[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.field=value`` strings (values parsed as YAML, so ``[a, b]`` is a list)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item}: an override must look like section.field=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:  # a control character, an unclosed bracket: say which field, in one line
            problem = " ".join(str(getattr(err, "problem", None) or err).split())
            raise ConfigError(f"{key.strip()}: {raw!r} is not a value ({problem})") from None
        set_dotted(data, key.strip(), value)
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of sections")
    return data


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every field: the source of ``clampdpo config show`` help."""
    rows = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.name}" if prefix else f.name
        hint = get_type_hints(cls)[f.name]
        _, inner = _is_optional(hint)
        if dataclasses.is_dataclass(inner):
            rows.extend(describe(cast(type, inner), name))
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        )
        rows.append((name, repr(default), f.metadata.get("help", "")))
    return rows
