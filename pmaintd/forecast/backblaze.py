"""Backblaze drive-stats daily CSVs (plain or gzip) -> one polars frame, and -> Telegraf-shaped points.

Backblaze's columns change over the years, so the reader takes whatever `smart_N_raw` / `smart_N_normalized`
columns a file has. Several files are merged on (serial_number, date), taking the first non-null value of each
column, so overlapping releases (e.g. the 2013 daily files and the 2013-2016 histories) add up rather than
duplicate drive-days.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from pmaintd.forecast.incidents import to_point as incident_point
from pmaintd.forecast.labels import Incident
from pmaintd.telemetry import SMART_ATTRIBUTE, SMART_DEVICE, Point

SMART_COL = re.compile(r"^smart_(\d+)_(raw|normalized)$")
KEYS = ("date", "serial_number")
BASE = ("date", "serial_number", "model", "capacity_bytes", "failure")

# SMART attribute id -> (attribute name as smartctl prints it, Telegraf smart_device field when it has one).
ATTRIBUTES: dict[int, tuple[str, str | None]] = {
    1: ("Raw_Read_Error_Rate", "read_error_rate"),
    3: ("Spin_Up_Time", None),
    4: ("Start_Stop_Count", None),
    5: ("Reallocated_Sector_Ct", "reallocated_sectors_count"),
    7: ("Seek_Error_Rate", "seek_error_rate"),
    9: ("Power_On_Hours", "power_on_hours"),
    10: ("Spin_Retry_Count", None),
    12: ("Power_Cycle_Count", "power_cycle_count"),
    187: ("Reported_Uncorrect", None),
    188: ("Command_Timeout", None),
    189: ("High_Fly_Writes", None),
    190: ("Airflow_Temperature_Cel", None),
    192: ("Power-Off_Retract_Count", None),
    193: ("Load_Cycle_Count", None),
    194: ("Temperature_Celsius", "temp_c"),
    196: ("Reallocated_Event_Count", None),
    197: ("Current_Pending_Sector", "pending_sector_count"),
    198: ("Offline_Uncorrectable", None),
    199: ("UDMA_CRC_Error_Count", "udma_crc_errors"),
}
HOST_TAG = "backblaze"


class BackblazeFormatError(ValueError):
    """A file is not a Backblaze drive-stats CSV; the message names the file and what is missing."""


def read_file(path: Path) -> pl.DataFrame:
    """One Backblaze CSV (plain or gzip) with its non-empty SMART columns; date parsed, rows in file order."""
    try:
        header = pl.read_csv(path, n_rows=0).columns
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as exc:
        raise BackblazeFormatError(f"{path}: cannot read as CSV: {exc}") from None
    missing = [c for c in ("date", "serial_number", "model") if c not in header]
    if missing:
        raise BackblazeFormatError(f"{path}: not a Backblaze drive-stats CSV, no column(s) {', '.join(missing)}")
    smart = [c for c in header if SMART_COL.match(c)]
    wanted = [c for c in BASE if c in header] + smart
    overrides = {c: pl.Float64 for c in smart} | {"capacity_bytes": pl.Int64, "failure": pl.Int8}
    overrides |= {"date": pl.Utf8, "serial_number": pl.Utf8, "model": pl.Utf8}
    df = pl.read_csv(path, columns=wanted, schema_overrides={k: v for k, v in overrides.items() if k in wanted})
    # Drop all-empty SMART columns (the 2013 files carry 80 of them) so merges stay narrow.
    empty = [c for c in smart if df[c].null_count() == df.height]
    df = df.drop(empty).with_columns(pl.col("date").str.to_date())
    if "failure" not in df.columns:
        df = df.with_columns(pl.lit(0, pl.Int8).alias("failure"))
    return df


def read_files(paths: Sequence[Path]) -> list[pl.DataFrame]:
    """Each file as `read_file` reads it, in order (for callers that need to know which file a row came from)."""
    if not paths:
        raise BackblazeFormatError("no Backblaze files given")
    return [read_file(Path(p)) for p in paths]


def read_backblaze(paths: Sequence[Path]) -> pl.DataFrame:
    """All files merged, sorted by serial_number then date; failure=1 on a drive's failure day."""
    return merge(read_files(paths))


def merge(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Frames from `read_file` as one, one row per (serial_number, date), sorted by serial then date."""
    df = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    if len(frames) > 1 or df.select(pl.struct(*KEYS).is_duplicated().any()).item():
        df = df.group_by(*KEYS).agg(pl.all().drop_nulls().first())
    return df.sort("serial_number", "date")


def failures(df: pl.DataFrame) -> pl.DataFrame:
    """entity, failure_time (UTC µs) of each drive's first failure day."""
    return (
        df.filter(pl.col("failure") == 1)
        .group_by(pl.col("serial_number").alias("entity"))
        .agg(pl.col("date").min().cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("failure_time"))
    )


def to_points(df: pl.DataFrame, batch_rows: int = 20_000) -> Iterator[list[Point]]:
    """Batches of smart_device, smart_attribute and pmaintd_incident points, Telegraf-shaped.

    smart_device carries the fields Telegraf names (reallocated_sectors_count from SMART 5, ...);
    smart_attribute has one series per attribute id with raw_value and, when present, value (normalized).
    Columns are turned into Python lists once per batch (not a dict per row): this loop is most of an import.
    """
    ids = sorted({int(m.group(1)) for c in df.columns if (m := SMART_COL.match(c))})
    names = {i: ATTRIBUTES.get(i, (f"Attribute_{i}", None)) for i in ids}
    for start in range(0, df.height, batch_rows):
        chunk = df.slice(start, batch_rows)
        ts = chunk["date"].cast(pl.Datetime("ns")).cast(pl.Int64).to_list()
        serials, models = chunk["serial_number"].to_list(), chunk["model"].to_list()
        failed = (chunk["failure"] == 1).to_list()
        caps = chunk["capacity_bytes"].to_list() if "capacity_bytes" in chunk.columns else [None] * chunk.height
        cols = {
            i: (_ints(chunk, f"smart_{i}_raw"), _ints(chunk, f"smart_{i}_normalized"))
            for i in ids
        }
        points: list[Point] = []
        for r in range(chunk.height):
            t, serial, model = ts[r], serials[r], models[r]
            dev_fields: dict[str, int | bool] = {"health_ok": not failed[r]}
            for i, (raws, norms) in cols.items():
                raw, norm = raws[r], norms[r]
                if raw is None and norm is None:
                    continue
                name, telegraf = names[i]
                fields: dict[str, int] = {}
                if raw is not None:
                    fields["raw_value"] = raw
                    if telegraf:
                        dev_fields[telegraf] = raw
                if norm is not None:
                    fields["value"] = norm
                tags = {"host": HOST_TAG, "serial_no": serial, "model": model, "id": str(i), "name": name}
                points.append(Point(SMART_ATTRIBUTE, tags, fields, t))
            if caps[r] is not None:
                dev_fields["capacity_bytes"] = caps[r]
            points.append(Point(SMART_DEVICE, {"host": HOST_TAG, "serial_no": serial, "model": model}, dev_fields, t))
            if failed[r]:
                points.append(incident_point(Incident(t, "disk", serial, "backblaze failure"), "backblaze"))
        yield points


def _ints(chunk: pl.DataFrame, col: str) -> list[int | None]:
    if col not in chunk.columns:
        return [None] * chunk.height
    return chunk[col].cast(pl.Int64, strict=False).to_list()


def _tag(frame: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit("").alias(name)


def from_store_frames(attributes: pl.DataFrame, devices: pl.DataFrame) -> pl.DataFrame:
    """The Backblaze-shaped frame (serial_number, model, host, date-time, smart_N_raw) from stored telemetry.

    `attributes` is a smart_attribute query (tags id, serial_no, model; field raw_value); `devices` a
    smart_device query, whose Telegraf fields fill attributes a source wrote only there (e.g. NVMe or a
    Telegraf without attribute series).
    """
    parts: list[pl.DataFrame] = []
    if attributes.height and {"id", "serial_no", "raw_value"} <= set(attributes.columns):
        a = attributes.select(
            pl.col("serial_no").alias("serial_number"),
            _tag(attributes, "model"),
            _tag(attributes, "host"),
            pl.col("time").alias("date"),
            pl.format("smart_{}_raw", pl.col("id")).alias("attr"),
            pl.col("raw_value").cast(pl.Float64),
        )
        parts.append(a)
    if devices.height and "serial_no" in devices.columns:
        by_field = {f: i for i, (_n, f) in ATTRIBUTES.items() if f}
        cols = [c for c in devices.columns if c in by_field]
        if cols:
            d = devices.select(
                pl.col("serial_no").alias("serial_number"),
                _tag(devices, "model"),
                _tag(devices, "host"),
                pl.col("time").alias("date"),
                *[pl.col(c).cast(pl.Float64).alias(f"smart_{by_field[c]}_raw") for c in cols],
            ).unpivot(index=["serial_number", "model", "host", "date"], variable_name="attr", value_name="raw_value")
            parts.append(d.drop_nulls("raw_value"))
    if not parts:
        return pl.DataFrame(
            schema={"serial_number": pl.Utf8, "model": pl.Utf8, "host": pl.Utf8, "date": pl.Datetime("us", "UTC")}
        )
    long = pl.concat(parts, how="vertical_relaxed")
    # Attribute series come first in `parts`, so they win over smart_device fields for the same time.
    return (
        long.group_by("serial_number", "date", "attr", maintain_order=True)
        .agg(pl.col("model").first(), pl.col("host").first(), pl.col("raw_value").first())
        .pivot(
            on="attr", index=["serial_number", "model", "host", "date"], values="raw_value", aggregate_function="first"
        )
        .sort("serial_number", "date")
    )
