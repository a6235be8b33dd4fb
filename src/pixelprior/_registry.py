"""One registry per kind of part (models, datasets, maps, priors, searches, scorers).

A :class:`Registry` is the single source of its parts' names, one-line help and
defaults: configuration checks, error messages and the command line's help read it, so
adding a part is adding one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Entry", "Registry"]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered part: its name, what builds it, help text, options and defaults."""

    name: str
    build: T
    help: str = ""
    options: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)


class Registry(Generic[T]):
    """Named parts of one kind.

    Args:
        kind: what the parts are, in words (``"sensitivity method"``), for messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, build: T, help: str = "", options: tuple[str, ...] = (),
                 defaults: dict | None = None) -> T:
        """Add a part; returns ``build`` (so it works as a decorator's body)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, build, help, tuple(options), dict(defaults or {}))
        return build

    def __call__(self, name: str, help: str = "", options: tuple[str, ...] = (),
                 defaults: dict | None = None) -> Callable[[T], T]:
        """Decorator form of :meth:`register`."""
        return lambda build: self.register(name, build, help, options, defaults)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name``; an unknown name is a ``KeyError`` listing the known."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: "
                           f"{', '.join(self._entries)}") from None

    def get(self, name: str) -> T:
        """What builds ``name``."""
        return self.entry(name).build

    def help_text(self, separator: str = " | ") -> str:
        """``name (help)`` of every part (the name alone where no help was given), for
        command-line help."""
        return separator.join(f"{name} ({entry.help})" if entry.help else name
                              for name, entry in self._entries.items())
