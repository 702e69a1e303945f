"""Strict dataclass configs: build from nested mappings, YAML/JSON files and ``dotted.key=value`` overrides.

Every configurable object takes a ``@dataclass`` config; nested configs compose. :func:`from_dict` checks
keys and types against the resolved type hints and raises :class:`ConfigError` with the source (file path,
``<dict>`` or ``<override>``), the full dotted key and, for unknown keys, the valid keys of that level.

Supported field types: ``int``, ``float`` (ints are widened), ``str``, ``bool``, ``X | None``, ``list[X]``,
``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[K, V]``, ``Literal[...]``, nested dataclasses and ``Any``.
YAML is read with a safe loader that also reads ``1e-4`` as a float and rejects duplicate keys.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from t2igan.utils.io import write_text_atomic

__all__ = [
    "ConfigError",
    "ConfigBase",
    "from_dict",
    "to_dict",
    "load_config",
    "save_config",
    "apply_overrides",
    "merge_dicts",
]

C = TypeVar("C")
_CB = TypeVar("_CB", bound="ConfigBase")

_YAML_SUFFIXES = (".yaml", ".yml")
_JSON_SUFFIXES = (".json",)
_NONE_TYPE = type(None)


class ConfigError(ValueError):
    """A config could not be read or does not match its dataclass."""


# --------------------------------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """Safe loader that reads ``1e-4``-style floats (YAML 1.2) and rejects duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merge keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: let the base class report it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# PyYAML follows YAML 1.1, where a float needs a dot: '1e-4' would load as the string '1e-4'.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # _StrictLoader is a SafeLoader: no arbitrary objects


# --------------------------------------------------------------------------------------------------- types


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as exc:
        raise TypeError(
            f"cannot resolve the type hints of {cls.__qualname__}: {exc} "
            "(config dataclasses and the types they use must be importable at module level)"
        ) from exc


def _init_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _strip_optional(tp: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not _NONE_TYPE]
        if len(args) == 1:
            return args[0]
    return tp


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_union(tp):
        return " or ".join("None" if a is _NONE_TYPE else _type_name(a) for a in args)
    if origin is not None and args:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return str(tp)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


# --------------------------------------------------------------------------------------------------- from_dict


def from_dict(cls: type[C], data: Mapping[str, Any], *, source: str | None = None) -> C:
    """Build dataclass ``cls`` from a nested mapping, strictly (unknown keys, wrong types -> ConfigError)."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    return _build(cls, data, "", source or "<dict>")


def _build(cls: type[C], data: Any, prefix: str, src: str) -> C:
    if not isinstance(data, Mapping):
        where = f"{prefix}: " if prefix else ""
        raise ConfigError(
            f"{src}: {where}expected a mapping for {cls.__name__}, got {type(data).__name__} {_short_repr(data)}"
        )
    fields = _init_fields(cls)
    names = {f.name for f in fields}
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{src}: unknown key '{_join(prefix, key)}'; valid keys: {', '.join(sorted(names)) or '(none)'}"
            )
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields:
        key = _join(prefix, f.name)
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], key, src)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{src}: missing required key '{key}'")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:  # validation in __post_init__
        raise ConfigError(f"{src}: {prefix or cls.__name__}: {exc}") from exc


def _mismatch(tp: Any, value: Any, key: str, src: str, optional: bool) -> ConfigError:
    expected = _type_name(tp) + (" or None" if optional else "")
    return ConfigError(f"{src}: {key}: expected {expected}, got {type(value).__name__} {_short_repr(value)}")


def _convert(tp: Any, value: Any, key: str, src: str, optional: bool = False) -> Any:
    """Check ``value`` against type ``tp`` and return it normalised (int -> float, list -> tuple, ...)."""
    if tp is Any or tp is object:
        return value
    if tp is _NONE_TYPE:
        if value is None:
            return None
        raise _mismatch(tp, value, key, src, False)
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    if _is_union(tp):
        inner = [a for a in args if a is not _NONE_TYPE]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(
                f"field '{key}': unsupported config type {tp!r} (only 'X | None' unions are supported)"
            )
        if value is None:
            return None
        return _convert(inner[0], value, key, src, optional=True)

    if origin is Literal:
        for allowed in args:
            if value == allowed and type(value) is type(allowed):
                return allowed
        allowed_text = ", ".join(repr(a) for a in args)
        raise ConfigError(f"{src}: {key}: expected one of {allowed_text}, got {_short_repr(value)}")

    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            value = to_dict(value)
        if not isinstance(value, Mapping):
            expected = f"a mapping for {tp.__name__}" + (" or None" if optional else "")
            raise ConfigError(
                f"{src}: {key}: expected {expected}, got {type(value).__name__} {_short_repr(value)}"
            )
        return _build(tp, value, key, src)

    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _mismatch(tp, value, key, src, optional)
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _mismatch(tp, value, key, src, optional)
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _mismatch(tp, value, key, src, optional)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _mismatch(tp, value, key, src, optional)

    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(tp, value, key, src, optional)
        item_tp = args[0] if args else Any
        return [_convert(item_tp, v, f"{key}[{i}]", src) for i, v in enumerate(value)]

    if tp is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(tp, value, key, src, optional)
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", src) for i, v in enumerate(value))
        if args == ((),):  # tuple[()]
            args = ()
        if len(value) != len(args):
            raise ConfigError(
                f"{src}: {key}: expected {_type_name(tp)} with {len(args)} items, got {len(value)}: "
                f"{_short_repr(value)}"
            )
        return tuple(_convert(a, v, f"{key}[{i}]", src) for i, (a, v) in enumerate(zip(args, value)))

    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise _mismatch(tp, value, key, src, optional)
        key_tp, val_tp = args if args else (Any, Any)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            sub = _join(key, k)
            out[_convert(key_tp, k, f"{sub} (key)", src)] = _convert(val_tp, v, sub, src)
        return out

    raise TypeError(f"field '{key}': unsupported config type {tp!r}")


# --------------------------------------------------------------------------------------------------- to_dict


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain nested dict in field order (tuples become lists), ready for JSON/YAML."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict needs a dataclass instance, got {type(obj).__name__}")
    return _plain(obj)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in _init_fields(type(value))}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------- files


def _read_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in _YAML_SUFFIXES + _JSON_SUFFIXES:
        raise ConfigError(
            f"{path}: unsupported config file extension {path.suffix!r} (use .yaml, .yml or .json)"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    if not text.strip():
        return {}
    if suffix in _JSON_SUFFIXES:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from exc
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from exc
    return {} if data is None else data


def load_config(path: str | os.PathLike[str], cls: type[C]) -> C:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) file into dataclass ``cls``; empty file -> defaults."""
    path = Path(path)
    return from_dict(cls, _read_file(path), source=str(path))


def save_config(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write dataclass ``obj`` atomically as YAML or JSON (by extension), keys in field order."""
    path = Path(path)
    data = to_dict(obj)
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    elif suffix in _JSON_SUFFIXES:
        text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    else:
        raise ConfigError(
            f"{path}: unsupported config file extension {path.suffix!r} (use .yaml, .yml or .json)"
        )
    write_text_atomic(path, text)


# --------------------------------------------------------------------------------------------------- overrides


def merge_dicts(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings merge recursively, other values in ``update`` replace; inputs untouched."""
    out = {k: copy.deepcopy(v) for k, v in base.items()}
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _child_type(tp: Any, part: str, done: str, src: str) -> Any:
    """Type of ``part`` inside a value of type ``tp`` (a dataclass, a ``dict[str, X]`` or ``Any``)."""
    tp = _strip_optional(tp)
    if _is_dataclass_type(tp):
        names = sorted(f.name for f in _init_fields(tp))
        if part not in names:
            raise ConfigError(
                f"{src}: unknown key '{_join(done, part)}'; valid keys: {', '.join(names) or '(none)'}"
            )
        return _hints(tp)[part]
    if tp is Any or tp is dict:
        return Any
    if typing.get_origin(tp) is dict:
        return typing.get_args(tp)[1]
    raise ConfigError(
        f"{src}: cannot set '{_join(done, part)}': '{done}' is {_type_name(tp)}, not a nested config"
    )


def _parse_override_value(text: str, target: Any, key: str, src: str) -> Any:
    try:
        value = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: cannot parse the value of '{key}': {text!r} ({exc})") from exc
    target = _strip_optional(target)
    if target is float and isinstance(value, str):
        try:
            return float(value)  # e.g. 'inf'; '1e-4' is already a float with _StrictLoader
        except ValueError:
            return value
    if target is str and isinstance(value, (bool, int, float)):
        return text.strip()  # name=2017 means the string '2017' for a str field
    return value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], cls: type) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a copy of ``data``, checked against ``cls``."""
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'key=value' strings, not a single string")
    src = "<override>"
    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{src}: expected 'dotted.key=value', got {item!r}")
        parts = key.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"{src}: malformed key {key!r} in {item!r}")
        node: dict[str, Any] = out
        tp: Any = cls
        done = ""
        for i, part in enumerate(parts):
            tp = _child_type(tp, part, done, src)
            done = _join(done, part)
            if i == len(parts) - 1:
                node[part] = _parse_override_value(text, tp, done, src)
                break
            child = node.get(part)
            if child is None:
                child = {}
            elif isinstance(child, Mapping):
                child = dict(child)
            else:
                raise ConfigError(
                    f"{src}: cannot set '{key}': '{done}' holds {type(child).__name__} {_short_repr(child)}, "
                    "not a mapping"
                )
            node[part] = child
            node = child
    return out


# --------------------------------------------------------------------------------------------------- mixin


class ConfigBase:
    """Optional mixin for config dataclasses: ``from_dict``, ``to_dict``, ``replace``, ``load``, ``save``."""

    @classmethod
    def from_dict(cls: type[_CB], data: Mapping[str, Any], source: str | None = None) -> _CB:
        return from_dict(cls, data, source=source)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def replace(self: _CB, **changes: Any) -> _CB:
        """A copy with ``changes`` applied, type-checked like :func:`from_dict`."""
        names = {f.name for f in _init_fields(type(self))}
        for name in changes:
            if name not in names:
                raise ConfigError(f"<replace>: unknown key '{name}'; valid keys: {', '.join(sorted(names))}")
        return from_dict(type(self), to_dict(dataclasses.replace(self, **changes)), source="<replace>")

    @classmethod
    def load(cls: type[_CB], path: str | os.PathLike[str]) -> _CB:
        return load_config(path, cls)

    def save(self, path: str | os.PathLike[str]) -> None:
        save_config(self, path)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw mapping of a YAML/JSON config file (only its own keys; not validated against a class)."""
    data = _read_file(Path(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
