#!/usr/bin/env python3
"""Reads Parquet files written by the Swift writer with two independent readers, pyarrow and DuckDB, and
compares them with the expected values the Swift test wrote to a JSON file.

    parquet_check.py EXPECTED.json    check every file listed; exit 0 when all agree, 1 otherwise
    parquet_check.py --versions       print the readers' versions; exit 3 when one is missing

EXPECTED.json: {"files": [{"name", "path", "compression": "UNCOMPRESSED"|"ZSTD",
  "columns": [{"name", "type": "int64"|"int32"|"int8"|"float32"|"string", "nullable"}],
  "row_groups": [rows per row group], "metadata": {key: value},
  "data": [[column values, null for a null; float32 as its IEEE bits (uint32)]]}]}

Checked: logical and physical types, nullability, row-group layout, codec, key/value metadata, every value
(float32 bit for bit through pyarrow; by value, sign of zero and NaN-ness through DuckDB), per-row-group
statistics (null counts always; min/max exact where written, and written exactly where the writer's rules
say), and filtered queries in both readers, which skip row groups by those statistics.
"""
import bisect
import json
import math
import sys
from array import array

try:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as e:  # the Swift test turns this into a skip naming the reason
    if "--versions" in sys.argv:
        print(f"missing: {e}")
        sys.exit(3)
    raise

ARROW_TYPES = {"int64": pa.int64(), "int32": pa.int32(), "int8": pa.int8(), "float32": pa.float32(), "string": pa.string()}
DUCK_TYPES = {"int64": "BIGINT", "int32": "INTEGER", "int8": "TINYINT", "float32": "FLOAT", "string": "VARCHAR"}
PHYSICAL = {"int64": "INT64", "int32": "INT32", "int8": "INT32", "float32": "FLOAT", "string": "BYTE_ARRAY"}
MAX_STRING_STAT = 64  # bytes; longer extremes get no min/max (ColumnBuffer.maxStringStatisticBytes)

errors = []


def fail(f, msg):
    errors.append(f"{f['name']}: {msg}")


def values_of(col, raw):
    """Expected Python values: floats decoded from bits (None stays None)."""
    if col["type"] != "float32":
        return raw
    decoded = array("f", array("I", [0 if b is None else b for b in raw]).tobytes()).tolist()
    return [None if b is None else x for b, x in zip(raw, decoded)]


def same_float(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def expected_stats(col, vals):
    """(null_count, min, max) the writer promises for one row group; min/max None when not written."""
    nulls = sum(v is None for v in vals)
    present = [v for v in vals if v is not None]
    if not present:
        return nulls, None, None
    if col["type"] == "float32":
        if any(math.isnan(v) for v in present):
            return nulls, None, None
        lo, hi = min(present), max(present)
        return nulls, (-0.0 if lo == 0 else lo), (0.0 if hi == 0 else hi)
    if col["type"] == "string":
        lo, hi = min(present), max(present)  # code-point order is UTF-8 byte order
        if len(lo.encode()) > MAX_STRING_STAT or len(hi.encode()) > MAX_STRING_STAT:
            return nulls, None, None
        return nulls, lo, hi
    return nulls, min(present), max(present)


class Counts:
    """Expected row counts of `col = v` and `col >= v` (DuckDB's order: NaN above every number), and a few
    probe values spread over the column's range, its largest included."""

    def __init__(self, col, values):
        vals = [v for v in values if v is not None]
        self.nans = sum(1 for v in vals if col["type"] == "float32" and math.isnan(v))
        self.sorted = sorted(v for v in vals if not (col["type"] == "float32" and math.isnan(v)))
        distinct = sorted(set(self.sorted))
        self.probes = distinct[:: max(1, len(distinct) // 4)] + distinct[-1:]

    def eq(self, v):
        return bisect.bisect_right(self.sorted, v) - bisect.bisect_left(self.sorted, v)

    def ge(self, v):
        return len(self.sorted) - bisect.bisect_left(self.sorted, v) + self.nans


def check_pyarrow(f, cols, data, vals, counts):
    pf = pq.ParquetFile(f["path"])
    md = pf.metadata
    n = sum(f["row_groups"])
    if md.num_rows != n:
        fail(f, f"pyarrow: {md.num_rows} rows, expected {n}")
    got_groups = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    if got_groups != f["row_groups"]:
        fail(f, f"pyarrow: row groups {got_groups}, expected {f['row_groups']}")
    kv = {k.decode(): v.decode() for k, v in (md.metadata or {}).items()}
    if kv != f["metadata"]:
        fail(f, f"pyarrow: key/value metadata {kv}, expected {f['metadata']}")
    schema = pf.schema_arrow
    for j, c in enumerate(cols):
        field = schema.field(j)
        if (field.name, field.type, field.nullable) != (c["name"], ARROW_TYPES[c["type"]], c["nullable"]):
            fail(f, f"pyarrow: column {j} is {field}, expected {c}")
        pc = pf.schema.column(j)
        if pc.physical_type != PHYSICAL[c["type"]]:
            fail(f, f"pyarrow: column {c['name']} physical type {pc.physical_type}")
        want_logical = {"int8": "Int(bitWidth=8, isSigned=true)", "string": "String"}.get(c["type"], "None")
        if str(pc.logical_type) != want_logical:
            fail(f, f"pyarrow: column {c['name']} logical type {pc.logical_type}, expected {want_logical}")

    start = 0
    for g, rows in enumerate(f["row_groups"]):
        rg = md.row_group(g) if g < md.num_row_groups else None
        for j, c in enumerate(cols):
            if rg is None:
                break
            cc = rg.column(j)
            if cc.compression != f["compression"]:
                fail(f, f"pyarrow: row group {g} column {c['name']} codec {cc.compression}")
            nulls, lo, hi = expected_stats(c, vals[j][start:start + rows])
            st = cc.statistics
            if st is None or not st.has_null_count or st.null_count != nulls:
                fail(f, f"pyarrow: row group {g} column {c['name']} null_count {st and st.null_count}, expected {nulls}")
                continue
            if st.has_min_max != (lo is not None):
                fail(f, f"pyarrow: row group {g} column {c['name']} has_min_max {st.has_min_max}, expected {lo is not None}")
            elif lo is not None:
                ok = (same_float(st.min, lo) and same_float(st.max, hi)) if c["type"] == "float32" else (st.min == lo and st.max == hi)
                if not ok:
                    fail(f, f"pyarrow: row group {g} column {c['name']} min/max {st.min!r}/{st.max!r}, expected {lo!r}/{hi!r}")
        start += rows

    table = pq.read_table(f["path"])
    if table.num_rows != n:
        fail(f, f"pyarrow: read {table.num_rows} rows, expected {n}")
        return
    for j, c in enumerate(cols):
        arr = table.column(j).combine_chunks()
        valid = arr.is_valid().to_pylist()
        if c["type"] == "float32":
            bits = array("I")
            if len(arr):
                bits.frombytes(arr.buffers()[1].to_pybytes()[4 * arr.offset:4 * (arr.offset + len(arr))])
            got = [int(b) if ok else None for b, ok in zip(bits, valid)]
        else:
            got = arr.to_pylist()
        want = data[j]
        if got != want:
            k = next(i for i in range(n) if i >= len(got) or got[i] != want[i])
            fail(f, f"pyarrow: column {c['name']} row {k}: {got[k] if k < len(got) else '-'!r}, expected {want[k]!r}")

    # Filters prune row groups by their statistics: the counts must still be exact.
    for j, c in enumerate(cols):
        for v in counts[j].probes:
            got = pq.read_table(f["path"], columns=[c["name"]], filters=[(c["name"], "==", v)]).num_rows
            if got != counts[j].eq(v):
                fail(f, f"pyarrow: filter {c['name']} == {v!r} gave {got} rows, expected {counts[j].eq(v)}")


def check_duckdb(f, cols, data, vals, counts):
    con = duckdb.connect()
    src = "read_parquet('" + f["path"].replace("'", "''") + "')"
    n = sum(f["row_groups"])
    described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    got_types = [(r[0], r[1]) for r in described]
    want_types = [(c["name"], DUCK_TYPES[c["type"]]) for c in cols]
    if got_types != want_types:
        fail(f, f"duckdb: columns {got_types}, expected {want_types}")
    quoted = ['"' + c["name"].replace('"', '""') + '"' for c in cols]
    rows = con.execute(
        f"SELECT {', '.join(quoted)} FROM read_parquet('" + f["path"].replace("'", "''") +
        "', file_row_number = true) ORDER BY file_row_number").fetchall()
    if len(rows) != n:
        fail(f, f"duckdb: {len(rows)} rows, expected {n}")
        return
    for j, c in enumerate(cols):
        got = [r[j] for r in rows]
        if c["type"] == "float32":
            # DuckDB hands out doubles; a float32 widens exactly, so narrowing back gives its bits (NaN
            # payloads aside: NaN-ness is compared, payloads are pyarrow's check).
            narrowed = array("I", array("f", [0.0 if x is None else x for x in got]).tobytes())
            agree = [(a is None and b is None) or (a is not None and b is not None and
                     (x == b or (math.isnan(a) and math.isnan(v))))
                     for a, x, b, v in zip(got, narrowed, data[j], vals[j])]
        else:
            agree = [a == b for a, b in zip(got, vals[j])]
        if not all(agree):
            i = agree.index(False)
            fail(f, f"duckdb: column {c['name']} row {i}: {got[i]!r}, expected {vals[j][i]!r}")

    meta = con.execute(
        f"SELECT row_group_id, column_id, compression, stats_null_count, row_group_num_rows "
        f"FROM parquet_metadata('" + f["path"].replace("'", "''") + "') ORDER BY row_group_id, column_id").fetchall()
    want_meta, start = [], 0
    for g, r in enumerate(f["row_groups"]):
        for j, c in enumerate(cols):
            want_meta.append((g, j, f["compression"], sum(v is None for v in data[j][start:start + r]), r))
        start += r
    if [tuple(m) for m in meta] != want_meta:
        fail(f, f"duckdb: parquet_metadata {meta[:4]}..., expected {want_meta[:4]}...")

    # Row-group pruning by statistics must not lose rows. DuckDB orders NaN above every number, so NaN rows
    # match `>=` (a chunk holding NaN must not advertise a max that would exclude it).
    for j, c in enumerate(cols):
        for v in counts[j].probes:
            eq, ge = counts[j].eq(v), counts[j].ge(v)
            got_eq, got_ge = con.execute(
                f"SELECT count(*) FILTER (WHERE {quoted[j]} = $1), count(*) FILTER (WHERE {quoted[j]} >= $1) FROM {src}",
                [v]).fetchone()
            got_eq2 = con.execute(f"SELECT count(*) FROM {src} WHERE {quoted[j]} = $1", [v]).fetchone()[0]
            got_ge2 = con.execute(f"SELECT count(*) FROM {src} WHERE {quoted[j]} >= $1", [v]).fetchone()[0]
            if (got_eq, got_ge, got_eq2, got_ge2) != (eq, ge, eq, ge):
                fail(f, f"duckdb: {c['name']} = / >= {v!r}: {got_eq}/{got_ge} (scan), {got_eq2}/{got_ge2} (filtered), expected {eq}/{ge}")
        nulls = data[j].count(None)
        if con.execute(f"SELECT count(*) FROM {src} WHERE {quoted[j]} IS NULL").fetchone()[0] != nulls:
            fail(f, f"duckdb: {c['name']} IS NULL count differs from {nulls}")


def main():
    if sys.argv[1:] == ["--versions"]:
        print(f"pyarrow {pa.__version__}, duckdb {duckdb.__version__}")
        return 0
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    for f in spec["files"]:
        cols, data = f["columns"], f["data"]
        vals = [values_of(c, d) for c, d in zip(cols, data)]
        counts = [Counts(c, v) for c, v in zip(cols, vals)]
        before = len(errors)
        for check in (check_pyarrow, check_duckdb):
            try:
                check(f, cols, data, vals, counts)
            except Exception as e:  # a reader that refuses the file is a finding, not a crash of the check
                fail(f, f"{check.__name__}: {type(e).__name__}: {e}")
        status = "ok" if len(errors) == before else "FAILED"
        print(f"{status} {f['name']}: {sum(f['row_groups'])} rows, {len(f['row_groups'])} row groups, {f['compression']}")
    for e in errors[:50]:
        print("error:", e)
    if errors:
        print(f"parquet_check: {len(errors)} mismatches")
        return 1
    print(f"parquet_check: {len(spec['files'])} files agree with pyarrow {pa.__version__} and duckdb {duckdb.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
