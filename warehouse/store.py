"""The one module that opens DuckDB.

DuckDB lets one process write a file, and a read-write open excludes every reader in other processes.
A flow runs for minutes, yet `libra sql` must answer while it runs, and two scheduled flows may overlap.
So no connection is held for long: every read or write opens the file, does its work in one short
transaction and closes it, under an advisory lock file beside the database (`.<file>.locks/data.lock`): shared
for readers, exclusive for writers, waiting (not failing) when the other side holds it. A writer holds
the file for one batch insert (milliseconds), so readers and other writers wait at most that long.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:  # polars (with pyarrow) is imported where a frame is made: `libra sql`/`status` need neither
    import polars as pl


class WarehouseError(RuntimeError):
    """A warehouse problem the user can act on (missing file, lock timeout, bad SQL)."""


# The connection that runs a user's own SQL (`libra sql`) can reach no file but the warehouse, load no
# extension and change no setting, whatever the statement manages to say: a second gate behind the
# statement check of `read_only_statement` (DuckDB settings, see its "Securing DuckDB" page).
USER_SQL_CONFIG = {
    "enable_external_access": False, "autoinstall_known_extensions": False,
    "autoload_known_extensions": False, "python_enable_replacements": False, "lock_configuration": True,
}


_EXPLAIN = re.compile(r"\A\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?", re.IGNORECASE)


def read_only_statement(sql: str) -> str:
    """`sql` when it is exactly one SELECT (also DESCRIBE, SHOW, SUMMARIZE, VALUES, FROM …, and EXPLAIN
    [ANALYZE] of one), else a WarehouseError saying why. DuckDB's own parser decides, so no spelling
    slips past a pattern:
    COPY … TO, EXPORT DATABASE, ATTACH/DETACH/USE, INSTALL/LOAD, SET/RESET/PRAGMA, CALL and every write
    have a statement type of their own."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise WarehouseError(f"SQL error: {e}") from None
    if len(statements) != 1:
        raise WarehouseError(
            f"libra sql is read-only and runs one statement per call; this input has {len(statements)}"
        )
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN [ANALYZE] runs its statement: that one must be a read
        inner = _EXPLAIN.sub("", sql, count=1)
        if inner != sql:
            read_only_statement(inner)
            return sql
    if kind != duckdb.StatementType.SELECT:
        raise WarehouseError(
            f"libra sql is read-only: a {kind.name} statement is refused (only SELECT, DESCRIBE, SHOW, "
            "SUMMARIZE and VALUES queries run)"
        )
    return sql


def sql_text(name: str) -> str:
    """A named SQL file shipped with the package, e.g. `queries/pending_responses.sql`."""
    return resources.files("libra.warehouse").joinpath(name).read_text(encoding="utf-8")


def _sql_files(folder: str) -> list[tuple[str, str]]:
    root = resources.files("libra.warehouse").joinpath(folder)
    files = sorted((p.name, p.read_text(encoding="utf-8")) for p in root.iterdir() if p.name.endswith(".sql"))
    return files


class _FileLock:
    """fcntl advisory locks that wait up to `timeout_s`, with writer preference.

    Shared flock alone starves writers (back-to-back readers always overlap), so a second lock file
    marks a writer's intent: a writer takes the gate exclusively, then the data lock; a reader passes
    the gate (shared, released at once) before taking the data lock shared. A waiting writer therefore
    blocks new readers and gets the file as soon as the current readers finish.
    """

    def __init__(self, path: Path, timeout_s: float):
        self.path = path
        self.gate_path = Path(str(path) + ".gate")
        self.timeout_s = timeout_s

    def _acquire(self, fd: int, mode: int, deadline: float, what: str) -> None:
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseError(
                        f"{self.path}: waited {self.timeout_s:.0f}s for the warehouse lock ({what}); "
                        "another process holds it"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout_s
        what = "write" if exclusive else "read"
        gate = os.open(self.gate_path, os.O_RDWR | os.O_CREAT, 0o644)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                self._acquire(gate, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, deadline, what)
                self._acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, deadline, what)
            finally:
                os.close(gate)  # closing a descriptor releases its lock: the gate is only passed through
            yield
        finally:
            os.close(fd)


class Warehouse:
    """A DuckDB warehouse file. Cheap to construct; opens the file only inside `reader()`/`writer()`."""

    def __init__(self, path: str | Path, *, create: bool = True, lock_timeout_s: float = 600.0):
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            if not create:
                raise WarehouseError(f"{self.path}: no warehouse here (run a flow or `libra demo` first)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Lock files live in one hidden folder beside the database, not as a litter of siblings.
        self.lock_dir = self.path.parent / f".{self.path.name}.locks"
        self.lock_dir.mkdir(exist_ok=True)
        self._lock = _FileLock(self.lock_dir / "data.lock", lock_timeout_s)
        self._local = threading.local()
        self.migrate()

    # -- connections -------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction under the exclusive lock; nested use in a thread reuses it."""
        con = getattr(self._local, "writer", None)
        if con is not None:
            yield con
            return
        with self._lock.hold(exclusive=True):
            con = duckdb.connect(str(self.path))
            self._local.writer = con
            try:
                con.execute("BEGIN TRANSACTION")
                yield con
                con.execute("COMMIT")
            except BaseException:
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                self._local.writer = None
                con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection under the shared lock (inside a writer: that writer's connection)."""
        con = getattr(self._local, "writer", None)
        if con is not None:
            yield con
            return
        with self._lock.hold(exclusive=False):
            con = duckdb.connect(str(self.path), read_only=True)
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def stage_lock(self, stage: str, timeout_s: float = 6 * 3600) -> Iterator[None]:
        """Held by a flow for its whole run: two runs of the same stage on one warehouse take turns
        (the second then finds nothing pending) instead of both paying for the same LLM calls.
        Different stages still run side by side; their writes serialise on the data lock."""
        lock = _FileLock(self.lock_dir / f"{stage}.runlock", timeout_s)
        fd = os.open(lock.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            lock._acquire(fd, fcntl.LOCK_EX, time.monotonic() + timeout_s, f"{stage} run")
            yield
        finally:
            os.close(fd)

    # -- schema ------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply pending numbered migrations and refresh the views when their SQL changed."""
        migrations = _sql_files("migrations")
        views = _sql_files("views")
        views_hash = hashlib.sha256("".join(t for _, t in views).encode()).hexdigest()[:16]
        if self.path.exists() and self._schema_is_current(migrations, views_hash):
            return
        with self.writer() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
                " applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
            )
            done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
            for name, text in migrations:
                version = int(name.split("_", 1)[0])
                if version in done:
                    continue
                con.execute(text)
                con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
            for _, text in views:
                con.execute(text)
            con.execute(
                "INSERT OR REPLACE INTO settings VALUES ('schema.views_hash', ?)", [views_hash]
            )

    def _schema_is_current(self, migrations: list[tuple[str, str]], views_hash: str) -> bool:
        try:
            with self.reader() as con:
                have = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
                stored = con.execute(
                    "SELECT value FROM settings WHERE key = 'schema.views_hash'"
                ).fetchall()
        except duckdb.Error:
            return False
        want = {int(n.split("_", 1)[0]) for n, _ in migrations}
        # a set, not the max: a lower-numbered migration added later must still be applied
        return have >= want and bool(stored) and stored[0][0] == views_hash

    # -- reading -----------------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        params: list[Any] | dict[str, Any] | None = None,
        frames: dict[str, pl.DataFrame] | None = None,
    ) -> pl.DataFrame:
        """Run a read query; `frames` are registered as tables for it (e.g. keys for an anti-join)."""
        import polars as pl

        with self.reader() as con:
            for name, frame in (frames or {}).items():
                con.register(name, frame.to_arrow())
            try:
                return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())  # type: ignore[return-value]
            except duckdb.Error as e:
                raise WarehouseError(f"SQL error: {e}") from None
            finally:
                for name in frames or {}:
                    con.unregister(name)

    def read_only_query(self, sql: str) -> pl.DataFrame:
        """A user's SQL (`libra sql`): one read statement on a connection locked down by USER_SQL_CONFIG."""
        import polars as pl

        statement = read_only_statement(sql)
        with self._lock.hold(exclusive=False):
            con = duckdb.connect(str(self.path), read_only=True, config=USER_SQL_CONFIG)
            try:
                return pl.from_arrow(con.sql(statement).to_arrow_table())  # type: ignore[return-value]
            except duckdb.Error as e:
                raise WarehouseError(f"SQL error: {e}") from None
            finally:
                con.close()

    def read_only_rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """`read_only_query` as column names and Python rows, without polars or pyarrow: `libra sql` and
        `libra status` answer in a fraction of the time those imports take (bench/cli_start.py)."""
        statement = read_only_statement(sql)
        with self._lock.hold(exclusive=False):
            con = duckdb.connect(str(self.path), read_only=True, config=USER_SQL_CONFIG)
            try:
                return _rows(con.execute(statement))
            except duckdb.Error as e:
                raise WarehouseError(f"SQL error: {e}") from None
            finally:
                con.close()

    def query_rows(
        self, queries: list[tuple[str, list[Any] | dict[str, Any] | None]]
    ) -> list[tuple[list[str], list[tuple[Any, ...]]]]:
        """Several (sql, params) reads on one connection, each as column names and Python rows, without
        polars or pyarrow (see `read_only_rows`): `libra status` pays for one open, not one per table."""
        with self.reader() as con:
            try:
                return [_rows(con.execute(sql, params)) for sql, params in queries]
            except duckdb.Error as e:
                raise WarehouseError(f"SQL error: {e}") from None

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        with self.reader() as con:
            rows = con.execute(sql, params).fetchall()
        # fetchall, not fetchone: DuckDB 2 refuses new work on a connection with an unfinished result
        return rows[0][0] if rows else None

    def table_counts(self) -> dict[str, int]:
        with self.reader() as con:
            tables = [
                t for (t,) in con.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_type = 'BASE TABLE' AND table_schema = 'main' ORDER BY 1"
                ).fetchall()
            ]
            return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}

    # -- writing -----------------------------------------------------------------------------------

    def insert(self, table: str, frame: pl.DataFrame, *, on_conflict: str = "ignore") -> int:
        """Insert a batch through Arrow; returns the number of new rows.

        on_conflict: 'ignore' keeps the stored row (idempotent re-inserts), 'replace' overwrites it
        (e.g. a failed response that now succeeded).
        """
        if frame.is_empty():
            return 0
        verb = {"ignore": "INSERT OR IGNORE", "replace": "INSERT OR REPLACE"}[on_conflict]
        with self.writer() as con:
            before = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
            con.register("_batch", frame.to_arrow())
            try:
                con.execute(f'{verb} INTO "{table}" BY NAME SELECT * FROM _batch')
            finally:
                con.unregister("_batch")
            after = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
        return after - before

    def execute(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> None:
        with self.writer() as con:
            con.execute(sql, params)

    def set_settings(self, values: dict[str, Any]) -> None:
        if not values:
            return
        import polars as pl

        frame = pl.DataFrame({"key": list(values), "value": [str(v) for v in values.values()]})
        self.insert("settings", frame, on_conflict="replace")


def _rows(result: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[Any, ...]]]:
    columns = [d[0] for d in result.description or []]
    return columns, result.fetchall()
