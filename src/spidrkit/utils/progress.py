"""Progress bars through tqdm when installed (the ``cli`` extra), a silent pass-through otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class _NoBar:
    def __init__(self, iterable: Iterable[Any] | None = None, **_: Any) -> None:
        self.iterable = iterable
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for item in self.iterable:
            self.n += 1
            yield item

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass

    def set_description(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


def progress(iterable: Iterable[T] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar on stderr (disabled when ``enabled`` is False or tqdm is missing)."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            kwargs.setdefault("file", sys.stderr)
            kwargs.setdefault("dynamic_ncols", True)
            return tqdm(iterable, **kwargs)
        except ImportError:
            pass
    return _NoBar(iterable, **kwargs)
