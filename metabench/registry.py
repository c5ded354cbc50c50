"""A tiny name -> object registry with did-you-mean errors."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from metabench.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps registered names to objects (classes or factories) of one kind.

    >>> r = Registry("algorithm"); r.register("maml")(object) and r.names()
    ['maml']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        text = str(name)
        # Long input: no fuzzy matching (quadratic) and a shortened echo, so the message stays one line.
        close = difflib.get_close_matches(text, self._items, n=1, cutoff=0.5) if len(text) <= 100 else []
        hint = f" Did you mean {close[0]!r}?" if close else ""
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        return f"Unknown {self.kind} {shown}.{hint} Known: {', '.join(self.names())}."

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
