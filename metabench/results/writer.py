"""Write and read one results file: validated against its schema, whole or absent, checksummed.

``write_table`` is what the engine calls. It writes to a hidden temporary file in the target
folder, flushes and fsyncs it, then ``os.replace``-s it over the target, so a reader (or a
killed writer) only ever sees the old file or the new one, never half of one. Pages carry CRC
checksums (``write_page_checksum``) and ``read_table`` verifies them, so a corrupted file is
detected rather than read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from metabench.errors import ResultsError
from metabench.results.schema import SCHEMAS, SPLITS, STATUSES, TableName, schema_for
from metabench.fsutil import fsync_dir

Records = pd.DataFrame | pa.Table | Mapping[str, Any] | Iterable[Mapping[str, Any]]


def write_table(data: Records, path: str | os.PathLike, table: TableName) -> Path:
    """Validate ``data`` against the ``table`` schema and write it atomically to ``path``.

    ``data`` is a DataFrame, a pyarrow Table, one record (a mapping, e.g. the single runs row)
    or an iterable of records. Columns must match the schema exactly (any order); a missing or
    extra column, a value that cannot be cast, a null in a required column or an unknown
    status/split raises ResultsError naming the column. Returns the path written.
    """
    path = Path(path)
    arrow = to_arrow(data, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name starts with a dot and ends in .tmp, so no results glob matches it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(arrow, f, write_page_checksum=True, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ResultsError(f"Could not write {path}: {exc}. Check the folder is writable.") from exc
        raise
    fsync_dir(path.parent)
    return path


def read_table(path: str | os.PathLike, table: TableName) -> pd.DataFrame:
    """Read one results file back as a DataFrame, verifying page checksums and the schema.

    A missing, corrupted or foreign file raises ResultsError saying which file.
    """
    path = Path(path)
    schema = schema_for(table)
    try:
        arrow = pq.read_table(path, page_checksum_verification=True)
    except FileNotFoundError:
        raise ResultsError(f"Results file {path} does not exist.") from None
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(
            f"Results file {path} is corrupted or not a Parquet file ({exc}); delete it and "
            "rerun the cell to regenerate it."
        ) from exc
    missing = [name for name in schema.names if name not in arrow.column_names]
    if missing:
        raise ResultsError(
            f"Results file {path} is not a {table} table: columns {', '.join(missing)} are missing."
        )
    return arrow.select(schema.names).to_pandas()


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files that a killed ``write_table`` left in ``folder``; returns how many.

    A SIGKILL between creating the temporary file and renaming it leaves ``.<name>.<random>.tmp``
    behind (harmless: no glob reads it). Call this only when no writer is active in ``folder``,
    e.g. when a cell resumes in its own run folder.
    """
    removed = 0
    for tmp in Path(folder).glob(".*.parquet.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    return removed


def to_arrow(data: Records, table: TableName) -> pa.Table:
    """Validate and cast ``data`` to the ``table`` schema (see ``write_table``)."""
    schema = schema_for(table)
    frame = _as_frame(data, table)
    columns = [str(c) for c in frame.columns]
    missing = [name for name in schema.names if name not in columns]
    extra = [name for name in columns if name not in schema.names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra)}")
        raise ResultsError(
            f"Rows for the {table} table do not match its schema: {'; '.join(parts)}. "
            f"Expected exactly: {', '.join(schema.names)}."
        )
    arrays = [_cast_column(frame[field.name], field, table) for field in schema]
    arrow = pa.Table.from_arrays(arrays, schema=schema)
    _check_values(arrow, table)
    return arrow


def _as_frame(data: Records, table: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pa.Table):
        return data.to_pandas()
    if isinstance(data, Mapping):
        return pd.DataFrame([dict(data)])
    try:
        return pd.DataFrame.from_records(list(data))
    except TypeError as exc:
        raise ResultsError(
            f"Rows for the {table} table must be a DataFrame, a pyarrow Table, a mapping or an "
            f"iterable of mappings; received {type(data).__name__}."
        ) from exc


def _cast_column(series: pd.Series, field: pa.Field, table: str) -> pa.Array:
    try:
        if pa.types.is_floating(field.type):
            # NaN is a value here (a diverged loss), not a missing one, so keep it as NaN.
            values = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            return pa.array(values, type=field.type)
        array = pa.array(series, from_pandas=True)
        if pa.types.is_timestamp(field.type):
            if pa.types.is_timestamp(array.type) and array.type.tz is None:
                array = array.cast(pa.timestamp(array.type.unit, tz="UTC"))  # naive means UTC
            # Truncating nanoseconds to microseconds is intended, so cast unsafely.
            return array.cast(field.type, safe=False)
        return array.cast(field.type, safe=True)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ResultsError(
            f"Column {field.name!r} of the {table} table cannot be stored as {field.type}: {exc}."
        ) from exc


def _check_values(arrow: pa.Table, table: str) -> None:
    for field in arrow.schema:
        nulls = arrow.column(field.name).null_count
        if nulls and not field.nullable:
            raise ResultsError(
                f"Column {field.name!r} of the {table} table is required but has {nulls} "
                "missing value(s)."
            )
    allowed = {"status": STATUSES if table == "runs" else None, "split": SPLITS.get(table)}
    for column, values in allowed.items():
        if values is None or column not in arrow.column_names:
            continue
        present = set(arrow.column(column).to_pylist())
        bad = sorted(present - set(values))
        if bad:
            raise ResultsError(
                f"Column {column!r} of the {table} table has value(s) {', '.join(map(repr, bad))}; "
                f"expected one of {', '.join(values)}."
            )



__all__ = ["SCHEMAS", "read_table", "remove_temporaries", "to_arrow", "write_table"]
