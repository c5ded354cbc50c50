"""A tiny name -> object registry with did-you-mean errors, and plugins.

Besides the built-in names, a registry finds a user's objects two ways (issue 20):

* an import path ``package.module:Object`` (e.g. ``--algorithms mypkg.algos:MyMAML``), imported on
  first use and recorded under that path;
* installed packages' entry points in the registry's group (``metabench.algorithms``,
  ``metabench.suites``), loaded once, the first time a name is not found among the built-ins.

``origin(name)`` says where an object came from: ``built-in``, ``PACKAGE VERSION`` (an entry
point) or ``module PATH`` (an import path). It is stored with every run.
"""
from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from typing import Callable, Generic, Iterator, TypeVar

from metabench.errors import ConfigError

T = TypeVar("T")

#: ``package.module:Object``: dotted Python identifiers, a colon, an attribute name.
IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
BUILT_IN = "built-in"


class Registry(Generic[T]):
    """Maps registered names to objects (classes or factories) of one kind.

    >>> r = Registry("algorithm"); r.register("maml")(object) and r.names()
    ['maml']
    """

    def __init__(self, kind: str, entry_point_group: str | None = None,
                 check: Callable[[str, object], T] | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        #: Validates a plugin object (raises ConfigError naming the broken rule) and returns what
        #: to register; the built-ins are trusted.
        self.check = check
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._entry_points_loaded = entry_point_group is None
        self._plugin_errors: list[str] = []

    def register(self, name: str, origin: str = BUILT_IN) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            self._origins[name] = origin
            return obj

        return deco

    def add(self, name: str, obj: T, origin: str = BUILT_IN) -> None:
        self.register(name, origin)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            pass
        if isinstance(name, str) and IMPORT_PATH.fullmatch(name):
            return self._import(name)
        if not self._entry_points_loaded:
            self.load_entry_points()
            if name in self._items:
                return self._items[name]
        raise ConfigError(self.unknown_message(name))

    def origin(self, name: str) -> str:
        """Where ``name`` came from: 'built-in', 'PACKAGE VERSION' or 'module PATH'."""
        self.get(name)
        return self._origins[name]

    def load_object(self, path: str) -> object:
        """The object an import path names, imported but not checked nor registered (ConfigError
        when it cannot be imported). The current directory is searched too, after everything
        else, as ``python -m`` would: ``metabench run --algorithms mymod:MyAlgo`` works from the
        folder holding ``mymod.py`` (the console script's sys.path lacks it)."""
        module_name, attr = path.split(":")
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.append(cwd)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {module_name!r} for the {self.kind} {path!r}: {exc}. "
                              f"Install the package that provides it, or put it on PYTHONPATH.") from None
        except Exception as exc:  # the plugin's own code failed at import time
            raise ConfigError(f"importing {module_name!r} for the {self.kind} {path!r} failed: "
                              f"{type(exc).__name__}: {exc}") from None
        if not hasattr(module, attr):
            raise ConfigError(f"module {module_name!r} has no {attr!r} (the {self.kind} {path!r})")
        return getattr(module, attr)

    def _import(self, path: str) -> T:
        obj = self.load_object(path)
        if self.check is not None:
            obj = self.check(path, obj)
        self._items[path] = obj
        self._origins[path] = f"module {path}"
        return obj

    def load_entry_points(self) -> list[str]:
        """Register every installed entry point of this registry's group (once); returns the
        problems met (a broken plugin never hides the built-ins: it is reported, not raised)."""
        if self._entry_points_loaded:
            return list(self._plugin_errors)
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=self.entry_point_group), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else f"entry point {ep.value}"
            if ep.name in self._items:
                self._plugin_errors.append(f"{self.kind} {ep.name!r} from {origin} is ignored: the name "
                                           f"is already taken ({self._origins[ep.name]})")
                continue
            try:
                obj = ep.load()
                if self.check is not None:
                    obj = self.check(ep.name, obj)
            except Exception as exc:
                self._plugin_errors.append(f"{self.kind} {ep.name!r} from {origin} failed to load: "
                                           f"{type(exc).__name__}: {exc}")
                continue
            self._items[ep.name] = obj
            self._origins[ep.name] = origin
        return list(self._plugin_errors)

    def unknown_message(self, name: str) -> str:
        text = str(name)
        # Long input: no fuzzy matching (quadratic) and a shortened echo, so the message stays one line.
        close = difflib.get_close_matches(text, self.suggestions(), n=1, cutoff=0.5) if len(text) <= 100 else []
        hint = f" Did you mean {close[0]!r}?" if close else ""
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        return f"Unknown {self.kind} {shown}.{hint} Known: {self.known_text()}."

    def suggestions(self) -> list[str]:
        """The names a did-you-mean may offer (a subclass adds its aliases)."""
        return list(self._items)

    def known_text(self) -> str:
        """What an unknown-name message lists as known."""
        plug = " (or a plugin as package.module:Class)" if self.entry_point_group else ""
        return ", ".join(self.names()) + plug

    def names(self) -> list[str]:
        """Built-in and installed (entry-point) names, sorted; import paths once they were used."""
        if not self._entry_points_loaded:
            self.load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._items and not self._entry_points_loaded:
            self.load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
