"""RangeIndex: key ranges [start, end) and what watches them, found by the keys they contain.

An interval tree: a treap ordered by (start, end) whose every node also
knows the largest end in its subtree, so `stab` visits only the subtrees that
can hold a range containing the key.  Finding the ranges that contain one key
costs O(log n) plus the matches (for a balanced tree), however many ranges
there are; adding and removing a range cost O(log n).  Watchers of exactly the
same range share one node (many watches of one prefix are common).

An end of ``b""`` means no end: every key from ``start`` on (etcd's range_end
"\\0").  The treap's priorities come from a seeded random source, so the
shape, and the cost, are the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_EndKey = tuple[int, bytes]  # (0, end) for a bounded range, (1, b"") for none: compares as keys do


def _end_key(end: bytes) -> _EndKey:
    return (1, b"") if not end else (0, end)


class _Node(Generic[T]):
    __slots__ = ("end", "items", "left", "max_end", "priority", "right", "start")

    def __init__(self, start: bytes, end: _EndKey, priority: float) -> None:
        self.start = start
        self.end = end
        # The treap's rules, not asserted: checking them walks a subtree at every add and remove.
        self.items: set[T] = set()  # never empty while the node is in the tree
        self.priority = priority  # no child has a higher priority (the heap order)
        self.left: _Node[T] | None = None  # every (start, end) on the left is smaller
        self.right: _Node[T] | None = None
        self.max_end = end  # the largest end in this subtree

    def update(self) -> None:
        self.max_end = max(
            self.end,
            self.left.max_end if self.left is not None else self.end,
            self.right.max_end if self.right is not None else self.end,
        )


class RangeIndex(Generic[T]):
    """RangeIndex maps ranges to sets of items; `stab` yields the sets whose range holds a key."""

    def __init__(self, seed: int = 0x5EED) -> None:
        self._root: _Node[T] | None = None
        self._random = random.Random(seed)
        self._count = 0  # items over all nodes

    def __len__(self) -> int:
        return self._count

    def add(self, start: bytes, end: bytes, item: T) -> None:
        """Add ``item`` under the range [start, end) (``end`` b"": no end)."""
        self._root = self._insert(self._root, start, _end_key(end), item)

    def remove(self, start: bytes, end: bytes, item: T) -> None:
        """Remove ``item`` from the range [start, end); nothing happens if it is not there."""
        self._root = self._delete(self._root, start, _end_key(end), item)

    def stab(self, key: bytes) -> Iterator[set[T]]:
        """The item sets of every range that contains ``key``."""
        point = (0, key)
        stack = [self._root]
        while stack:
            node = stack.pop()
            if node is None or node.max_end <= point:
                continue  # every range below ends at or before the key
            stack.append(node.left)
            if node.start <= key:
                if point < node.end:
                    yield node.items
                stack.append(node.right)  # starts on the right are larger but may still be <= key

    def __iter__(self) -> Iterator[T]:
        """Every item, in range order."""
        stack: list[_Node[T]] = []
        node = self._root
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.left
            node = stack.pop()
            yield from node.items
            node = node.right

    def _insert(self, node: _Node[T] | None, start: bytes, end: _EndKey, item: T) -> _Node[T]:
        if node is None:
            node = _Node(start, end, self._random.random())
            node.items.add(item)
            self._count += 1
            return node
        if (start, end) == (node.start, node.end):
            if item not in node.items:
                node.items.add(item)
                self._count += 1
            return node
        if (start, end) < (node.start, node.end):
            node.left = self._insert(node.left, start, end, item)
            if node.left.priority > node.priority:
                node = _rotate_right(node)
        else:
            node.right = self._insert(node.right, start, end, item)
            if node.right.priority > node.priority:
                node = _rotate_left(node)
        node.update()
        return node

    def _delete(self, node: _Node[T] | None, start: bytes, end: _EndKey, item: T) -> _Node[T] | None:
        if node is None:
            return None
        if (start, end) == (node.start, node.end):
            if item in node.items:
                node.items.discard(item)
                self._count -= 1
            if node.items:
                return node
            return _join(node.left, node.right)
        if (start, end) < (node.start, node.end):
            node.left = self._delete(node.left, start, end, item)
        else:
            node.right = self._delete(node.right, start, end, item)
        node.update()
        return node


def _rotate_right(node: _Node[T]) -> _Node[T]:
    top = node.left
    assert top is not None
    node.left, top.right = top.right, node
    node.update()
    top.update()
    return top


def _rotate_left(node: _Node[T]) -> _Node[T]:
    top = node.right
    assert top is not None
    node.right, top.left = top.left, node
    node.update()
    top.update()
    return top


def _join(left: _Node[T] | None, right: _Node[T] | None) -> _Node[T] | None:
    """One treap from two whose every range on the left is smaller than every range on the right."""
    if left is None:
        return right
    if right is None:
        return left
    if left.priority > right.priority:
        left.right = _join(left.right, right)
        left.update()
        return left
    right.left = _join(left, right.left)
    right.update()
    return right
