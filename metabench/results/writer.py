"""Write and read one results file: validated against its schema, whole or absent, checksummed.

``write_table`` is what the engine calls. It writes to a hidden temporary file in the target
folder, flushes and fsyncs it, then ``os.replace``-s it over the target, so a reader (or a
killed writer) only ever sees the old file or the new one, never half of one. Pages carry CRC
checksums (``write_page_checksum``) and the footer a sha256 of the whole file; ``read_table``
verifies both, so a corrupted file is detected rather than read. The footer also records the
results schema version (``schema.SCHEMA_VERSION``); files of an older version are read with their
missing columns filled in (``schema.LEGACY_DEFAULTS``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from metabench.errors import ConfigError, ResultsError
from metabench.results.ids import check_run_id
from metabench.results.schema import (
    LEGACY_DEFAULTS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    SPLITS,
    STATUSES,
    TableName,
    schema_for,
)
from metabench.fsutil import atomic_write_bytes
from metabench.fsutil import remove_temporaries as _remove_temporaries

#: Footer key of the whole-file sha256 (see ``parquet_bytes``).
CHECKSUM_KEY = "metabench.sha256"
_PLACEHOLDER = b"metabench-whole-file-sha256-placeholder".ljust(64, b"-")

Records = pd.DataFrame | pa.Table | Mapping[str, Any] | Iterable[Mapping[str, Any]]


def write_table(data: Records, path: str | os.PathLike, table: TableName) -> Path:
    """Validate ``data`` against the ``table`` schema and write it atomically to ``path``.

    ``data`` is a DataFrame, a pyarrow Table, one record (a mapping, e.g. the single runs row)
    or an iterable of records. Columns must match the schema exactly (any order), except that
    the columns of ``schema.LEGACY_DEFAULTS`` may be left out (they then take their default, as
    in a file of an older schema version); a missing or extra column, a value that cannot be cast, a null in a required column or an unknown
    status/split raises ResultsError naming the column. Returns the path written.

    A write that fails (disk full, permission denied) raises ResultsError and leaves an existing
    file at ``path`` as it was.
    """
    path = Path(path)
    payload = parquet_bytes(to_arrow(data, table))
    try:
        # The temporary name starts with a dot and ends in .tmp, so no results glob matches it.
        atomic_write_bytes(path, payload, fault_point="parquet")
    except OSError as exc:
        raise ResultsError(
            f"Could not write {path}: {exc.strerror or exc}. Earlier results are intact; free "
            "space or make the folder writable, then run the same command again to resume."
        ) from exc
    return path


def parquet_bytes(arrow: pa.Table) -> bytes:
    """The Parquet file for ``arrow``: zstd, CRC page checksums, the results schema version
    (``schema.SCHEMA_VERSION_KEY``) and a whole-file sha256.

    Page checksums cover page data only, not page headers or the footer (where a flipped bit can
    change statistics DuckDB filters on). So the footer also holds ``metabench.sha256``: the
    sha256 of the whole file as written with ``_PLACEHOLDER`` in that value's place (see
    ``file_checksum_ok``).
    """
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, arrow.schema, write_page_checksum=True, compression="zstd") as w:
        w.write_table(arrow)
        w.add_key_value_metadata({SCHEMA_VERSION_KEY: str(SCHEMA_VERSION), CHECKSUM_KEY: _PLACEHOLDER.decode()})
    data = bytearray(sink.getvalue().to_pybytes())
    pos = _placeholder_position(data, _PLACEHOLDER)
    data[pos : pos + len(_PLACEHOLDER)] = hashlib.sha256(data).hexdigest().encode()
    return bytes(data)


def file_checksum_ok(data: bytes, metadata: Mapping[bytes, bytes] | None) -> bool | None:
    """Whether the whole-file sha256 in a results file's footer matches its bytes.

    ``metadata`` is the file's footer key-value metadata. None when the file carries no
    checksum (written by metabench before whole-file checksums).
    """
    metadata = metadata or {}
    digest = metadata.get(CHECKSUM_KEY.encode())
    if digest is None:
        # A file from before whole-file checksums holds only pyarrow's schema; any other key
        # means ours was damaged (a flipped bit in its name), which must not pass as "old".
        legacy = set(metadata) <= {b"ARROW:schema"} and CHECKSUM_KEY.encode() not in data[-65536:]
        return None if legacy else False
    if len(digest) != len(_PLACEHOLDER):
        return False
    try:
        pos = _placeholder_position(data, digest)
    except ValueError:
        return False
    blank = data[:pos] + _PLACEHOLDER + data[pos + len(digest) :]
    return hashlib.sha256(blank).hexdigest().encode() == digest


def schema_version(metadata: Mapping[bytes, bytes] | None) -> int:
    """The results schema version recorded in a file's footer metadata; 1 when none is (files
    written before versions were recorded), 0 when the value is unreadable."""
    value = (metadata or {}).get(SCHEMA_VERSION_KEY.encode())
    if value is None:
        return 1
    try:
        return int(value)
    except ValueError:
        return 0


def _placeholder_position(data: bytes | bytearray, value: bytes) -> int:
    """Where ``value`` sits in the footer (the last occurrence after the last data page)."""
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    pos = data.rfind(value, max(footer, 0))
    if pos < 0:
        raise ValueError("checksum value not found in the footer")
    return pos


def read_table(path: str | os.PathLike, table: TableName) -> pd.DataFrame:
    """Read one results file back as a DataFrame, verifying checksums and the schema.

    A file of an older schema version gets the columns it lacks from ``schema.LEGACY_DEFAULTS``
    (e.g. a runs file from before variants: variant = algorithm, overrides = '{}'). A missing,
    corrupted or foreign file raises ResultsError saying which file.
    """
    path = Path(path)
    schema = schema_for(table)
    try:
        data = path.read_bytes()
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        if file_checksum_ok(data, pf.metadata.metadata) is False:
            raise pa.ArrowInvalid("its whole-file sha256 does not match")
        arrow = pf.read()
    except FileNotFoundError:
        raise ResultsError(f"Results file {path} does not exist.") from None
    except (OSError, pa.ArrowException, ValueError, IndexError) as exc:  # a damaged footer: any of these
        raise ResultsError(
            f"Results file {path} is corrupted or not a Parquet file ({exc}); delete it and "
            "rerun the cell to regenerate it."
        ) from exc
    defaults = LEGACY_DEFAULTS.get(table, {})
    missing = [name for name in schema.names if name not in arrow.column_names and name not in defaults]
    if missing:
        raise ResultsError(
            f"Results file {path} is not a {table} table: columns {', '.join(missing)} are missing."
        )
    return with_legacy_defaults(arrow, table).select(schema.names).to_pandas()


def with_legacy_defaults(arrow: pa.Table, table: str) -> pa.Table:
    """``arrow`` with each column of ``schema.LEGACY_DEFAULTS[table]`` that it lacks appended,
    holding its default (typed as the schema says)."""
    schema = schema_for(table)
    for name, (kind, value) in LEGACY_DEFAULTS.get(table, {}).items():
        if name in arrow.column_names:
            continue
        type_ = schema.field(name).type
        if kind == "column":
            column = arrow.column(str(value)).cast(type_)
        else:
            column = pa.array([value] * arrow.num_rows, type=type_)
        arrow = arrow.append_column(schema.field(name), column)
    return arrow


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files that a killed writer left in ``folder``; returns how many.

    A SIGKILL between creating the temporary file and renaming it leaves ``.<name>.<pid>.<random>.tmp``
    behind (harmless: no glob reads it). Call this only when no writer is active in ``folder``,
    e.g. when a cell resumes in its own run folder.
    """
    return len(_remove_temporaries(Path(folder), only_stale=False))


def to_arrow(data: Records, table: TableName) -> pa.Table:
    """Validate and cast ``data`` to the ``table`` schema (see ``write_table``)."""
    schema = schema_for(table)
    frame = _as_frame(data, table)
    columns = [str(c) for c in frame.columns]
    defaults = {k: v for k, v in LEGACY_DEFAULTS.get(table, {}).items() if k not in columns}
    if defaults and "variant" in defaults and "overrides" in columns:
        # A variant label cannot be defaulted from the algorithm when overrides were given.
        raise ResultsError(
            f"Rows for the {table} table give 'overrides' but no 'variant'; add the variant label "
            "(metabench.spec.variant_label(algorithm, overrides))."
        )
    missing = [name for name in schema.names if name not in columns and name not in defaults]
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
    if defaults:
        frame = frame.assign(**{
            name: frame[str(value)] if kind == "column" else [value] * len(frame)
            for name, (kind, value) in defaults.items()
        })  # fmt: skip
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
    if "run_id" in arrow.column_names:  # run ids become folder names: no '..', no '/'
        for run_id in set(arrow.column("run_id").to_pylist()):
            try:
                check_run_id(run_id)
            except ConfigError as exc:
                raise ResultsError(f"Column 'run_id' of the {table} table: {exc}") from None
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



__all__ = ["CHECKSUM_KEY", "SCHEMAS", "file_checksum_ok", "parquet_bytes", "read_table", "remove_temporaries",
           "schema_version", "to_arrow", "with_legacy_defaults", "write_table"]
