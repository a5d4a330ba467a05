# Reads every Delta table of a lake with three engines nobody here wrote — the `deltalake`
# package, Polars and DuckDB's Delta extension (from its wheel, offline) — and compares each
# with the rows `lakepipe query` returned for it. Used by `tests/it/batch.rs`.
#
#   python readers.py <lake> <dir>    <dir>/<table>.path holds the table's directory,
#                                     <dir>/<table>.jsonl what `lakepipe query --format json`
#                                     printed for `SELECT * FROM <table>`
#
# Prints one JSON object: per table, per reader, the row count, the schema (names and
# normalised Arrow types), the partition columns where the reader says them, and a SHA-256
# over the rows in canonical form, sorted (every row: the tables of a test lake are small); and
# the protocol each table declares.
import datetime
import glob
import hashlib
import json
import os
import sys

import duckdb
import duckdb_extension_delta
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def norm_type(t):
    """An Arrow type up to the representation choices engines make on their own (string vs
    large_string vs string_view, dictionary encoding, the spelling of UTC)."""
    if pa.types.is_dictionary(t):
        return norm_type(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_timestamp(t):
        tz = t.tz
        if tz in ("UTC", "+00:00", "Etc/UTC", "Z"):
            tz = "UTC"
        return f"timestamp[{tz}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"list<{norm_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{norm_type(f.type)}" for f in t) + ">"
    if pa.types.is_map(t):
        return f"map<{norm_type(t.key_type)},{norm_type(t.item_type)}>"
    return str(t)


def canon(v, t):
    """A value in a form every reader (and JSON) can give: timestamps as microseconds since
    the epoch, dates as ISO strings, floats by their shortest round-trip text."""
    if v is None:
        return None
    if pa.types.is_dictionary(t):
        return canon(v, t.value_type)
    if pa.types.is_timestamp(t):
        if isinstance(v, str):
            v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        d = v - EPOCH
        return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
    if pa.types.is_date(t):
        return v if isinstance(v, str) else v.isoformat()
    if pa.types.is_floating(t):
        return repr(float(v))
    if pa.types.is_decimal(t):
        return str(v)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return [canon(x, t.value_type) for x in v]
    if pa.types.is_struct(t):
        return {f.name: canon(v.get(f.name), f.type) for f in t}
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return v.hex() if isinstance(v, bytes) else v
    return v


def digest(rows, schema):
    """Count and SHA-256 of `rows` (dicts; a missing key is a null) in canonical form, sorted."""
    lines = sorted(
        json.dumps([canon(r.get(f.name), f.type) for f in schema], sort_keys=True)
        for r in rows
    )
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return len(lines), h.hexdigest()


def describe(table, schema, partitions=None):
    n, sha = digest(table.to_pylist(), schema)
    out = {
        "rows": n,
        "sha256": sha,
        "schema": [[f.name, norm_type(f.type)] for f in table.schema],
    }
    if partitions is not None:
        out["partitions"] = partitions
    return out


def main():
    lake, qdir = sys.argv[1], sys.argv[2]
    ext = glob.glob(
        os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension")
    )
    assert len(ext) == 1, ext
    duck = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    duck.execute(f"LOAD '{ext[0]}'")
    report = {"versions": {"deltalake": __import__("deltalake").__version__, "polars": pl.__version__, "duckdb": duckdb.__version__}, "tables": {}}
    for p in sorted(glob.glob(os.path.join(qdir, "*.path"))):
        name = os.path.basename(p)[: -len(".path")]
        path = open(p).read().strip()
        dt = DeltaTable(path)
        # The table's own schema (from its log) is the one every reader's rows are read by.
        schema = pa.schema(dt.schema().to_arrow())
        proto = dt.protocol()
        entry = {
            "protocol": {
                "min_reader_version": proto.min_reader_version,
                "min_writer_version": proto.min_writer_version,
                "reader_features": proto.reader_features,
                "writer_features": proto.writer_features,
            },
            "readers": {},
        }
        entry["readers"]["deltalake"] = describe(
            dt.to_pyarrow_table(), schema, list(dt.metadata().partition_columns)
        )
        entry["readers"]["polars"] = describe(pl.read_delta(path).to_arrow(), schema)
        rel = duck.sql(f"SELECT * FROM delta_scan('{path}')")
        entry["readers"]["duckdb"] = describe(rel.to_arrow_table(), schema)
        with open(os.path.join(qdir, name + ".jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        n, sha = digest(rows, schema)
        entry["readers"]["lakepipe"] = {"rows": n, "sha256": sha}
        report["tables"][name] = entry
    print(json.dumps(report), flush=True)


main()
# pyarrow and DuckDB threads can hang interpreter shutdown; the report is out.
os._exit(0)
