"""One calling convention for every attack, ``Cls(model, prior=None, *, option=...)``,
with the signatures of 0.2 kept working for one release (each with a
``DeprecationWarning``) and unknown options refused in one line.

Hand-written: the standard library has no decorator that maps old positional arguments
and renamed keywords onto a keyword-only signature, and the deprecation helpers of other
libraries (``typing_extensions.deprecated``, ``deprecation``) mark whole functions, not
arguments.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["Renamed", "keyword_options"]

Init = TypeVar("Init", bound=Callable[..., None])


def keyword_options(positional: tuple[str, ...] = (),
                    renamed: Mapping[str, str] | None = None) -> Callable[[Init], Init]:
    """Decorate an ``__init__(self, model, prior=None, *, ...)`` of an attack.

    The decorated ``__init__`` keeps its signature for ``inspect`` and editors; calls are
    translated before it runs:

    - arguments after ``model`` and ``prior`` given by position (the old signature, whose
      order is ``positional``) are passed by keyword, with a ``DeprecationWarning``;
    - old keyword names (``renamed``: old name -> new name) are passed under their new
      names, with a ``DeprecationWarning``;
    - an option the attack does not take is a ``TypeError`` naming it and the accepted
      ones. When the ``__init__`` takes ``**shared``, the accepted options include the
      class's :attr:`~pixelprior.search.Attack.shared_options`.

    Args:
        positional: the old positional order of the options after ``model, prior``.
        renamed: old keyword name -> its new name.

    Returns:
        The decorator.

    Raises:
        TypeError: raised by the decorated ``__init__``: an unknown option, more
            positional arguments than the old signature had, an option given both by
            position and by keyword, or under both its old and its new name.
    """
    renamed = dict(renamed or {})

    def decorate(init: Init) -> Init:
        parameters = inspect.signature(init).parameters.values()
        own = tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
        takes_shared = any(p.kind is p.VAR_KEYWORD for p in parameters)

        @functools.wraps(init)
        def wrapper(self, model, prior=None, *args: Any, **options: Any) -> None:
            name = type(self).__name__
            _by_keyword(name, positional, args, options)
            _rename(name, renamed, options)
            accepted = own + (tuple(getattr(self, "shared_options", ())) if takes_shared
                              else ())
            unknown = [key for key in options if key not in accepted]
            if unknown:
                raise TypeError(f"{name}() got an unknown option {unknown[0]!r}; it takes: "
                                f"{', '.join(sorted(accepted))}")
            init(self, model, prior, **options)

        return wrapper  # type: ignore[return-value]

    return decorate


def _by_keyword(name: str, positional: tuple[str, ...], args: tuple,
                options: dict[str, Any]) -> None:
    """Move old positional ``args`` into ``options`` under their old names (warning)."""
    if not args:
        return
    if len(args) > len(positional):
        raise TypeError(f"{name}() takes model and prior by position and every other "
                        f"option by keyword; got {len(args)} more positional argument(s)")
    names = positional[:len(args)]
    warnings.warn(f"{name}(): passing {', '.join(names)} by position is deprecated (it goes "
                  f"in pixelprior 0.4); pass {'it' if len(names) == 1 else 'them'} by "
                  f"keyword, e.g. {names[0]}=...", DeprecationWarning, stacklevel=3)
    for key, value in zip(names, args, strict=True):
        if key in options:
            raise TypeError(f"{name}() got {key!r} both by position and by keyword")
        options[key] = value


def _rename(name: str, renamed: Mapping[str, str], options: dict[str, Any]) -> None:
    """Pass options given under an old name under the new one (warning)."""
    for old, new in renamed.items():
        if old not in options:
            continue
        if new in options:
            raise TypeError(f"{name}() got both {old}= (its old name) and {new}=; give "
                            f"{new}= alone")
        warnings.warn(f"{name}({old}=...) is deprecated (it goes in pixelprior 0.4); use "
                      f"{new}=...", DeprecationWarning, stacklevel=3)
        options[new] = options.pop(old)


class Renamed:
    """A deprecated attribute name that reads (and writes) the attribute's new name.

    >>> class Attack:
    ...     pixels = Renamed("pixel_count")

    Args:
        new: the attribute's new name.
    """

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = new

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def _warn(self, owner: type) -> None:
        warnings.warn(f"{owner.__name__}.{self.old} is deprecated (it goes in pixelprior "
                      f"0.4); use .{self.new}", DeprecationWarning, stacklevel=3)

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        self._warn(owner)
        return getattr(instance, self.new)

    def __set__(self, instance: Any, value: Any) -> None:
        self._warn(type(instance))
        setattr(instance, self.new, value)
