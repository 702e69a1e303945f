"""Name -> object registries (models, losses, datasets, ...) so configs can pick implementations by name."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

__all__ = ["Registry", "RegistryError"]

T = TypeVar("T")

_NAME_RE = re.compile(r"[a-z0-9_.\-]+")


class RegistryError(KeyError):
    """A name is unknown, or already registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named entries of one ``kind`` (e.g. ``"model"``); with ``base``, entries must be subclasses/instances of it.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("ssagan")
    ... class SSAGAN: ...
    >>> MODELS.get("ssagan") is SSAGAN
    True
    """

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does it."""
        self._check_name(name)
        if obj is None:

            def decorator(o: T) -> T:
                self._add(name, o)
                return o

            return decorator
        self._add(name, obj)
        return obj

    def _check_name(self, name: Any) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"invalid {self.kind} name {name!r}: use a non-empty string of lowercase letters, digits, "
                "'_', '-' and '.'"
            )

    def _add(self, name: str, obj: T) -> None:
        if name in self._entries:
            if self._entries[name] is obj:  # the same object again (e.g. a re-imported module): no-op
                return
            raise RegistryError(
                f"{self.kind} '{name}' is already registered (as {self._describe(self._entries[name])})"
            )
        if self.base is not None:
            ok = issubclass(obj, self.base) if isinstance(obj, type) else isinstance(obj, self.base)
            if not ok:
                what = "a subclass" if isinstance(obj, type) else "an instance"
                raise TypeError(
                    f"cannot register {self._describe(obj)} as {self.kind} '{name}': "
                    f"not {what} of {self.base.__qualname__}"
                )
        self._entries[name] = obj

    @staticmethod
    def _describe(obj: Any) -> str:
        qualname = getattr(obj, "__qualname__", None)
        if qualname is not None:
            return f"{getattr(obj, '__module__', '?')}.{qualname}"
        return repr(obj)

    def get(self, name: str) -> T:
        """The entry called ``name``; RegistryError listing the choices if there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            choices = ", ".join(self.names()) or "(none registered)"
            raise RegistryError(f"unknown {self.kind} {name!r}; choices: {choices}") from None

    __getitem__ = get

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs sorted by name."""
        return [(n, self._entries[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry(kind={self.kind!r}, names={self.names()})"
