"""Object storage with O(1) lookups and list pages that never scan the whole collection.

Objects live in one dict keyed by id (Stripe ids carry their type in the prefix, so they never
clash). Every list Stripe offers (all PaymentIntents, one customer's PaymentMethods, one type of
Event...) is an :class:`OrderedIndex`: append-only parallel lists of creation sequence numbers and
ids. Generated ids end with their sequence number (see ``_ids``), so finding a cursor is a binary
search and a page costs O(log n + limit) whatever is stored, and adding to a list is two list
appends: no per-list hash table, which matters because a confirmed PaymentIntent lands in a dozen
lists and inserts into large hash tables are cache misses. Removal is rare (detach, delete) and
recorded in a small tombstone set.

Objects are stored as JSON-ready dicts and are **copy-on-write**: handlers replace a nested value
(``obj["metadata"] = new``) instead of mutating it in place, so a shallow copy is a faithful
snapshot (that is how events capture ``data.object`` cheaply).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from ._errors import invalid_request, no_such
from ._ids import sequence_of

StripeObject = dict[str, Any]


class OrderedIndex:
    """Ids in creation order, paged newest first like Stripe lists."""

    __slots__ = ("_ids", "_removed", "_seqs")

    def __init__(self) -> None:
        self._seqs: list[int] = []
        self._ids: list[str] = []
        self._removed: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids) - len(self._removed)

    def ids(self) -> list[str]:
        """All live ids, oldest first."""
        return [i for i in self._ids if i not in self._removed]

    def add(self, object_id: str, seq: int) -> None:
        """Add ``object_id`` (created as number ``seq``); re-adding a removed id revives it."""
        seqs = self._seqs
        if not seqs or seq > seqs[-1]:
            # The common case, a new object: nothing older can be its removed self.
            seqs.append(seq)
            self._ids.append(object_id)
        elif object_id in self._removed:
            self._removed.discard(object_id)
        elif self._find(object_id, seq) is None:
            position = bisect_left(self._seqs, seq)
            self._seqs.insert(position, seq)
            self._ids.insert(position, object_id)

    def discard(self, object_id: str, seq: int) -> None:
        """Remove ``object_id`` if present."""
        if self._find(object_id, seq) is not None:
            self._removed.add(object_id)

    def page(
        self,
        limit: int,
        starting_after: tuple[str, int] | None = None,
        ending_before: tuple[str, int] | None = None,
        *,
        keep: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], bool]:
        """Up to ``limit`` ids, newest first, and whether more lie beyond them (``keep`` filters).

        Cursors are ``(id, seq)`` pairs.
        """
        ids, removed = self._ids, self._removed
        found: list[str] = []
        if ending_before is not None:
            i = self._cursor(ending_before, "ending_before") + 1
            while i < len(ids) and len(found) <= limit:
                object_id = ids[i]
                if object_id not in removed and (keep is None or keep(object_id)):
                    found.append(object_id)
                i += 1
            return found[:limit][::-1], len(found) > limit
        i = len(ids) - 1
        if starting_after is not None:
            i = self._cursor(starting_after, "starting_after") - 1
        while i >= 0 and len(found) <= limit:
            object_id = ids[i]
            if object_id not in removed and (keep is None or keep(object_id)):
                found.append(object_id)
            i -= 1
        return found[:limit], len(found) > limit

    def _find(self, object_id: str, seq: int) -> int | None:
        position = bisect_left(self._seqs, seq)
        if position < len(self._ids) and self._ids[position] == object_id:
            return position
        return None

    def _cursor(self, cursor: tuple[str, int], param: str) -> int:
        position = self._find(*cursor)
        if position is None or cursor[0] in self._removed:
            raise invalid_request(
                f"Invalid {param}: the object '{cursor[0]}' is not in this list.", param=param
            )
        return position


class Store:
    """All objects by id plus the named list indexes."""

    __slots__ = ("_custom", "indexes", "objects")

    def __init__(self) -> None:
        self.objects: dict[str, StripeObject] = {}
        self.indexes: dict[tuple[str, ...], OrderedIndex] = {}
        #: Sequence numbers of objects whose id the caller chose (e.g. ``prod_basic``).
        self._custom: dict[str, int] = {}

    def seq(self, object_id: str) -> int:
        """The creation sequence number of ``object_id`` (for a malformed id: -1, found nowhere)."""
        custom = self._custom.get(object_id)
        return custom if custom is not None else sequence_of(object_id)

    def adopt(self, object_id: str, seq: int) -> None:
        """Register a caller-chosen id with sequence number ``seq`` before storing it."""
        self._custom[object_id] = seq

    def put(self, obj: StripeObject, *lists: tuple[str, ...]) -> StripeObject:
        """Store ``obj`` under its id and append it to each of ``lists``."""
        object_id = obj["id"]
        self.objects[object_id] = obj
        seq = self.seq(object_id)
        for key in lists:
            self.index(key).add(object_id, seq)
        return obj

    def index(self, key: tuple[str, ...]) -> OrderedIndex:
        """The list index named ``key``, created empty on first use."""
        index = self.indexes.get(key)
        if index is None:
            index = self.indexes[key] = OrderedIndex()
        return index

    def add_to(self, key: tuple[str, ...], object_id: str) -> None:
        """Add an existing object to the list ``key``."""
        self.index(key).add(object_id, self.seq(object_id))

    def remove_from(self, key: tuple[str, ...], object_id: str) -> None:
        """Take ``object_id`` out of the list ``key``."""
        self.index(key).discard(object_id, self.seq(object_id))

    def members(self, key: tuple[str, ...]) -> list[str]:
        """Ids in the list ``key``, oldest first."""
        index = self.indexes.get(key)
        return index.ids() if index is not None else []

    def page(
        self,
        key: tuple[str, ...],
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        keep: Callable[[StripeObject], bool] | None = None,
    ) -> tuple[list[str], bool]:
        """One page of ids of the list ``key`` (see :meth:`OrderedIndex.page`)."""
        index = self.indexes.get(key)
        if index is None:
            index = OrderedIndex()
        objects = self.objects
        return index.page(
            limit,
            None if starting_after is None else (starting_after, self.seq(starting_after)),
            None if ending_before is None else (ending_before, self.seq(ending_before)),
            keep=None if keep is None else (lambda object_id: keep(objects[object_id])),
        )

    def get(self, object_id: str, kind: str, *, param: str | None = None) -> StripeObject:
        """The object ``object_id`` of type ``kind`` (Stripe's ``object`` field), or
        resource_missing."""
        obj = self.objects.get(object_id)
        if obj is None or obj["object"] != kind or obj.get("deleted"):
            raise no_such(kind.removeprefix("test_helpers."), object_id, param=param)
        return obj

    def find(self, object_id: str | None, kind: str) -> StripeObject | None:
        """The object if it exists and is of type ``kind``, else ``None``."""
        if object_id is None:
            return None
        obj = self.objects.get(object_id)
        return obj if obj is not None and obj["object"] == kind else None
