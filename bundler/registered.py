"""What bundler.kinds registers with the layers below it (the format, the site's configuration):
the kinds, set once when bundler.kinds is imported, read by layers that may not import it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Registered(Generic[T]):
    def __init__(self, needed_for: str) -> None:
        self._items: list[T] = []
        self.needed_for = needed_for  # what fails without them ("reading a bundle")

    def set(self, items: Sequence[T]) -> None:
        """The content kinds, in report order (bundler/kinds/__init__.py calls this once)."""
        self._items[:] = items

    def get(self) -> Sequence[T]:
        if not self._items:  # without its kinds a layer would take each kind's key for an unknown one
            raise RuntimeError(f"no content kinds are registered: import bundler.kinds before {self.needed_for}")
        return tuple(self._items)
