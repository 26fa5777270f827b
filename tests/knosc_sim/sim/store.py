"""The tenant's tables: plain dict records by id, with the indexes the routes need and an undo journal.

Records are never changed in place once stored: an update stores a new dict. That keeps list pages that
are being serialised outside the lock consistent, lets cached sort orders hold record references, and
makes the undo journal a list of (table, id, previous record) entries.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional


class Table:
    __slots__ = ("name", "rows", "version", "next_id", "bkey", "bidx", "parent_field", "children", "refidx",
                 "store")

    def __init__(self, store: "Store", name: str, bkey: tuple = (), parent_field: Optional[str] = None):
        self.store = store
        self.name = name
        self.rows: dict = {}          # id -> record; ids only grow, so iteration order is id order
        self.version = 0
        self.next_id = 1
        self.bkey = bkey
        self.bidx: dict = {}          # business key -> id
        self.parent_field = parent_field
        self.children: dict = {}      # parent id -> {line id: None} (an ordered set)
        self.refidx: dict = {}        # key -> {value: {id: None}}, built on first use, then maintained

    # -- reading -----------------------------------------------------------------------------------------
    def get(self, rid):
        return self.rows.get(rid)

    def __len__(self) -> int:
        return len(self.rows)

    def values(self):
        return self.rows.values()

    def key_of(self, rec) -> object:
        if not self.bkey:
            return None
        if len(self.bkey) == 1:
            return rec.get(self.bkey[0])
        return tuple(rec.get(k) for k in self.bkey)

    def by_key(self, key):
        rid = self.bidx.get(key)
        return None if rid is None else self.rows.get(rid)

    def lines_of(self, parent_id) -> list:
        ids = self.children.get(parent_id)
        if not ids:
            return []
        rows = self.rows
        return sorted((rows[i] for i in ids), key=lambda r: r["id"])

    def refs(self, key: str, value) -> list:
        """Records whose `key` equals value (through a lazily built index)."""
        idx = self.refidx.get(key)
        if idx is None:
            idx = {}
            for rid, rec in self.rows.items():
                v = rec.get(key)
                if v is not None:
                    idx.setdefault(v, {})[rid] = None
            self.refidx[key] = idx
        ids = idx.get(value)
        if not ids:
            return []
        return [self.rows[i] for i in ids]

    def has_ref(self, key: str, value) -> bool:
        return bool(self.refs(key, value))

    # -- writing -----------------------------------------------------------------------------------------
    def new_id(self) -> int:
        rid = self.next_id
        self.next_id += 1
        return rid

    def _index_add(self, rec) -> None:
        rid = rec["id"]
        if self.bkey:
            self.bidx[self.key_of(rec)] = rid
        if self.parent_field is not None:
            pid = rec.get(self.parent_field)
            if pid is not None:
                self.children.setdefault(pid, {})[rid] = None
        for key, idx in self.refidx.items():
            v = rec.get(key)
            if v is not None:
                idx.setdefault(v, {})[rid] = None

    def _index_remove(self, rec) -> None:
        rid = rec["id"]
        if self.bkey:
            k = self.key_of(rec)
            if self.bidx.get(k) == rid:
                del self.bidx[k]
        if self.parent_field is not None:
            pid = rec.get(self.parent_field)
            kids = self.children.get(pid)
            if kids is not None:
                kids.pop(rid, None)
                if not kids:
                    del self.children[pid]
        for key, idx in self.refidx.items():
            v = rec.get(key)
            if v is not None:
                ids = idx.get(v)
                if ids is not None:
                    ids.pop(rid, None)
                    if not ids:
                        del idx[v]

    def insert(self, rec: dict) -> dict:
        if rec.get("id") is None:
            rec["id"] = self.new_id()
        rid = rec["id"]
        if isinstance(rid, int) and rid >= self.next_id:
            self.next_id = rid + 1
        self.store.journal_add(self, rid, None)
        self.rows[rid] = rec
        self._index_add(rec)
        self.version += 1
        return rec

    def load(self, rec: dict) -> None:
        """Fast insert for the generator: no journal, caller guarantees a fresh id."""
        self.rows[rec["id"]] = rec
        self._index_add(rec)

    def replace(self, rec: dict) -> dict:
        rid = rec["id"]
        old = self.rows[rid]
        if old is rec:
            raise RuntimeError("records are replaced, never changed in place")
        self.store.journal_add(self, rid, old)
        self._index_remove(old)
        self.rows[rid] = rec
        self._index_add(rec)
        self.version += 1
        return rec

    def delete(self, rid) -> dict:
        old = self.rows.pop(rid)
        self.store.journal_add(self, rid, old)
        # _index_remove looks the record up by id, so it must run on the popped record
        self._index_remove(old)
        self.version += 1
        return old

    def _restore(self, rid, old) -> None:
        cur = self.rows.get(rid)
        if cur is not None:
            self._index_remove(cur)
            del self.rows[rid]
        if old is not None:
            self.rows[rid] = old
            self._index_add(old)
        self.version += 1


class Store:
    """All tables plus an undo journal used to make every write (and every job) all-or-nothing."""

    def __init__(self):
        self.tables: dict[str, Table] = {}
        self.journal: Optional[list] = None
        self.on_change: list[Callable[[], None]] = []

    def add_table(self, name: str, bkey: tuple = (), parent_field: Optional[str] = None) -> Table:
        t = Table(self, name, bkey, parent_field)
        self.tables[name] = t
        return t

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def journal_add(self, table: Table, rid, old) -> None:
        if self.journal is not None:
            self.journal.append((table, rid, old))

    # -- transactions ------------------------------------------------------------------------------------
    def begin(self) -> None:
        if self.journal is not None:
            raise RuntimeError("nested transaction")
        self.journal = []

    def savepoint(self) -> int:
        return len(self.journal) if self.journal is not None else 0

    def rollback_to(self, sp: int) -> None:
        j = self.journal
        if j is None:
            return
        while len(j) > sp:
            table, rid, old = j.pop()
            table._restore(rid, old)

    def commit(self) -> None:
        self.journal = None

    def rollback(self) -> None:
        self.rollback_to(0)
        self.journal = None

    def versions(self, names: Iterable[str]) -> tuple:
        return tuple(self.tables[n].version for n in names)
