"""A thread-safe in-memory DuckDB mirror of a results folder (``ResultsStore``).

Each table's Parquet files (one glob per table, see ``schema.GLOBS``) are loaded into an
in-memory DuckDB table ``t_<table>`` the first time a query needs that table, and kept in step
with the folder file by file: a walk of the folder compares each file's (mtime, size) with what
was loaded, and only new, rewritten or removed files are read or dropped. So new runs appear as
soon as their files are renamed into place, while a million rows are scanned from memory, not
re-read from Parquet on every query. ``auto_refresh=False`` walks the folder only when
``refresh()`` is called (the dashboard does so once per rerun, see ``dashboard.data``). Each file
is checked before it is loaded (cached; see ``verify``): a corrupt or incompatible one is left out
of every query and listed by ``problems()``.

Threads (the dashboard's sessions, a preload) each query through their own cursor on the one
in-memory database; a table is synced by one thread at a time. The queries themselves (SQL in
``metabench.results.sql``, the public API in ``metabench.results.query``) only call
``_params``, ``_query`` and ``_memo``.

The reference set (issue 21): beside the user's folder the store mirrors a read-only reference
folder (``metabench.reference``: the shipped set by default, any folder for tests, or none with
``reference=False``). Every loaded row carries ``source``: 'reference' for files under that
folder, 'yours' for the rest. The store only reads; nothing here writes or deletes a file.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from metabench.errors import ResultsError
from metabench.results.schema import GLOBS, LEGACY_DEFAULTS, SCHEMAS
from metabench.results.verify import Problem, check_results_file_cached

#: How many unfiltered scans a store remembers (see ``ResultsStore._memo``).
MEMO_SIZE = 64

#: {table: {path: (mtime in ns, size)}}: one walk of a folder.
Listing = dict[str, dict[str, tuple[int, int]]]


def _walk(results_dir: Path) -> Listing:
    """One walk of the folder: per table, {path: (mtime in ns, size)} of the files its glob
    (``schema.GLOBS``) selects."""
    patterns = {table: glob.rsplit("/", 1)[-1] for table, glob in GLOBS.items()}
    found: Listing = {table: {} for table in GLOBS}
    for folder, _dirs, names in os.walk(results_dir):
        for name in names:
            for table, pattern in patterns.items():
                if fnmatch.fnmatchcase(name, pattern):
                    path = os.path.join(folder, name)
                    try:
                        st = os.stat(path)
                    except OSError:  # replaced or removed while we looked
                        break
                    found[table][path] = (st.st_mtime_ns, st.st_size)
                    break
    return found


def _split_good(listing: Listing) -> tuple[Listing, list[Problem]]:
    """(``listing`` without the files every query leaves out, the problems of those files):
    corrupt, or from an incompatible version (see ``metabench.results.verify``). Each check is
    cached until the file changes."""
    good: Listing = {}
    bad: list[Problem] = []
    for table, files in listing.items():
        good[table] = {}
        for path, stamp in files.items():
            problem = check_results_file_cached(Path(path), table)
            if problem is None or problem.severity != "bad":
                good[table][path] = stamp
            else:
                bad.append(problem)
    return good, bad


def _stamp(listing: Listing) -> tuple[int, int, int]:
    files = [v for table in listing.values() for v in table.values()]
    return len(files), max((m for m, _ in files), default=0), sum(n for _, n in files)


def fingerprint(results_dir: str | os.PathLike) -> tuple[int, int, int]:
    """A cheap change detector for a results folder: (files, newest mtime in ns, total bytes).

    Covers the files of all three tables; atomic rewrites change the mtime, new curve parts the
    count. Used as a cache key so the dashboard shows new results without a restart.
    """
    return _stamp(_walk(Path(results_dir)))


#: ``source`` of rows from the reference folder and from the user's results folder.
REFERENCE, YOURS = "reference", "yours"


class ResultsStore:
    """The in-memory mirror of one results folder (``RESULTS/<run_id>/{runs,curves-*,tasks}.parquet``)
    and of the reference folder beside it."""

    def __init__(self, results_dir: str | os.PathLike, auto_refresh: bool = True,
                 reference: bool | str | os.PathLike = True):  # fmt: skip
        self.results_dir = Path(results_dir).expanduser().absolute()
        self.auto_refresh = auto_refresh
        """True: every query first looks for changed files; False: only ``refresh()`` does."""
        if reference is True:
            from metabench.reference import active_reference_dir

            ref = active_reference_dir()
        else:
            ref = None if reference is False else Path(reference).expanduser().absolute()
        self.reference_dir: Path | None = ref
        """The read-only folder whose rows are ``source = 'reference'``; None = no reference rows."""
        self._con = duckdb.connect(":memory:")
        self._local = threading.local()  # one cursor per thread
        self._walk_lock = threading.Lock()
        self._table_locks = {table: threading.Lock() for table in GLOBS}
        self._listing: Listing | None = None  # good files of the last walk
        self._problems: list[Problem] = []  # bad files of the last walk
        self._loaded: Listing = {}  # table -> files in memory
        self._versions = {table: 0 for table in GLOBS}  # bumped whenever a table's rows change
        self._memos: OrderedDict[tuple, pd.DataFrame] = OrderedDict()

    def refresh(self) -> tuple[int, int, int]:
        """Walk the folder once, bring the tables already in memory up to date with it, and
        return its ``fingerprint``."""
        with self._walk_lock:
            found = self._scan()
            listing = self._listing
        for table in list(self._loaded):
            # A table another thread is loading (the background preload) is skipped rather than
            # waited for: the next query of that table syncs it with this listing first.
            lock = self._table_locks[table]
            if lock.acquire(blocking=False):
                try:
                    self._sync(table, listing)
                finally:
                    lock.release()
        return _stamp(found)

    def preload(self, tables: tuple[str, ...] = ("runs", "tasks", "curves")) -> threading.Thread:
        """Load ``tables`` into memory in a background thread (the dashboard starts one when it
        opens a folder, so the first visit of each page finds its table loaded). Errors are
        left for the queries to report."""

        def load() -> None:
            for table in tables:
                try:
                    self._params(table)
                except ResultsError:
                    pass

        thread = threading.Thread(target=load, name=f"preload {self.results_dir}", daemon=True)
        thread.start()
        return thread

    def problems(self) -> list[Problem]:
        """Results files that every query leaves out, each with what is wrong and what to do.

        A file is checked once (full read, checksums, schema; see ``metabench.results.verify``)
        and remembered until its size or mtime changes, so this is cheap on every rerun.
        """
        with self._walk_lock:
            if self._listing is None or self.auto_refresh:
                self._scan()
            return list(self._problems)

    @property
    def exists(self) -> bool:
        """Whether the results folder exists at all."""
        return self.results_dir.is_dir()

    # -- what the queries call -------------------------------------------------------------------

    def _params(self, *tables: str, **params: Any) -> dict[str, Any] | None:
        """Make sure ``tables`` are in memory and current; None when some table has no file yet
        (-> an empty result). Files that fail their check (see ``problems``) are never loaded, so
        every query works on the remaining files."""
        for attempt in (0, 1):
            with self._walk_lock:
                if self._listing is None or self.auto_refresh:
                    self._scan()
                listing = self._listing
            try:
                for table in tables:
                    if not listing[table]:
                        return None
                    with self._table_locks[table]:
                        self._sync(table, listing)
                break
            except ResultsError:
                # A resuming cell deletes its curve parts newer than its checkpoint: a file listed a
                # moment ago may be gone. _sync dropped the listing; walk once more.
                if attempt:
                    raise
        return params

    def _memo(self, sql: str, params: dict[str, Any], *tables: str) -> pd.DataFrame:
        """``_query``, remembered until one of ``tables`` changes (the last ``MEMO_SIZE`` results).
        For the unfiltered scans that the filtered views select from; treat the frame as read-only."""
        key = (sql, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())),
               tuple(self._versions[t] for t in tables))  # fmt: skip
        with self._walk_lock:
            if key in self._memos:
                self._memos.move_to_end(key)
                return self._memos[key]
        df = self._query(sql, params)
        with self._walk_lock:
            self._memos[key] = df
            while len(self._memos) > MEMO_SIZE:
                self._memos.popitem(last=False)
        return df

    def _query(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        try:
            return self._cursor().execute(sql, params).df()
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    # -- the mirror ------------------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._walk_lock:  # the connection itself is not thread-safe; its cursors are
                cursor = self._local.cursor = self._con.cursor()
        return cursor

    def _source(self, path: str) -> str:
        """'reference' for a file under the reference folder, else 'yours'."""
        ref = self.reference_dir
        return REFERENCE if ref is not None and path.startswith(str(ref) + os.sep) else YOURS

    def _scan(self) -> Listing:
        """Walk the folder (and the reference folder) once: keep the good files as the listing
        every query loads from and the bad ones as ``problems``; return the whole walk (for the
        fingerprint). The caller holds the walk lock."""
        found = _walk(self.results_dir)
        if self.reference_dir is not None:  # a folder inside the other is walked once: paths are keys
            for table, files in _walk(self.reference_dir).items():
                found[table].update(files)
        self._listing, self._problems = _split_good(found)
        return found

    def _sync(self, table: str, listing: Listing) -> None:
        """Load the files of ``table`` that are new or changed since the last sync into
        ``t_<table>`` and drop the rows of changed or removed ones (one transaction).
        The caller holds the table's lock."""
        want = listing[table]
        have = self._loaded.get(table)
        name = f"t_{table}"
        con = self._cursor()
        if have is None:
            con.register("_empty", SCHEMAS[table].empty_table())
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT *, ''::VARCHAR AS _file, "
                        "''::VARCHAR AS source FROM _empty")
            con.unregister("_empty")
            have = self._loaded[table] = {}
        stale = [p for p, v in have.items() if want.get(p) != v]
        new = [p for p, v in want.items() if have.get(p) != v]
        if not stale and not new:
            return
        try:
            con.execute("BEGIN TRANSACTION")
            if stale:
                con.execute(f"DELETE FROM {name} WHERE list_contains($files, _file)", {"files": stale})
            for origin in (YOURS, REFERENCE):
                files = [p for p in new if self._source(p) == origin]
                if not files:
                    continue
                source = "read_parquet($files, union_by_name=true, hive_partitioning=false, filename=true)"
                present = set(con.execute(f"DESCRIBE SELECT * FROM {source}", {"files": files}).df()["column_name"])
                columns, values, params = _load_columns(table, present)
                con.execute(f"INSERT INTO {name} ({columns}, _file, source) SELECT {values}, filename, $origin "
                            f"FROM {source}", {"files": files, "origin": origin, **params})  # fmt: skip
            con.execute("COMMIT")
        except duckdb.Error as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:  # the error ended the transaction already
                pass
            with self._walk_lock:
                self._listing = None  # walk again next time: a file may have been replaced meanwhile
            raise self._error(exc) from exc
        for p in stale:
            del have[p]
        for p in new:
            have[p] = want[p]
        self._versions[table] += 1

    def _error(self, exc: duckdb.Error) -> ResultsError:
        first_line = str(exc).strip().splitlines()[0]
        return ResultsError(
            f"Could not read the results in {self.results_dir}: {first_line}. A file may be "
            "corrupted or from an incompatible metabench version; delete that run's folder "
            "and rerun it."
        )


def _load_columns(table: str, present: set[str]) -> tuple[str, str, dict[str, Any]]:
    """(the column list of an INSERT into ``t_<table>``, the matching SELECT list over the files,
    its parameters) for files holding the columns ``present``. Older files may lack some columns:
    those of ``schema.LEGACY_DEFAULTS`` take their default (also where files of both versions are
    read together and a column is null for the older ones); other missing columns stay null
    (``verify`` leaves such files out anyway). Column names come from the schema, values are bound."""
    defaults = LEGACY_DEFAULTS.get(table, {})
    names, values, params = [], [], {}
    for column in SCHEMAS[table].names:
        if column in defaults:
            kind, value = defaults[column]
            if kind == "column":
                fallback = f'"{value}"'
            elif value is None:
                fallback = "NULL"
            else:
                params[f"default_{column}"] = value
                fallback = f"$default_{column}"
            names.append(column)
            values.append(f'coalesce("{column}", {fallback})' if column in present else fallback)
        elif column in present:
            names.append(column)
            values.append(f'"{column}"')
    return ", ".join(f'"{c}"' for c in names), ", ".join(values), params
