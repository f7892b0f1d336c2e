"""Telemetry in the store -> the per-entity input frame a host or network FeatureSpec reads.

Each function queries the Telegraf-schema measurements collectors write and returns one row per (entity,
sample time) with plain numeric columns; `features.resample` then takes the last value per step. Counters
stay raw here (the feature function turns them into growth and rates), so a missed poll never fakes a rate.
Nothing here looks at data after `stop`.
"""

from __future__ import annotations

import polars as pl

from pmaintd.store import Store

HOST_INPUTS = (
    "cpu_used",
    "mem_used_percent",
    "load_per_cpu",
    "edac_ce",
    "edac_ue",
    "temp_max",
    "diskio_io_time",
    "diskio_weighted_io_time",
    "disk_realloc_max",
    "disk_pending_max",
    "disk_unhealthy",
)
"""Columns of `host_input`."""

NETWORK_INPUTS = (
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
    "flaps",
    "down_admin_up",
    "in_error_ratio",
    "rx_dbm",
    "temp_c",
)
"""Columns of `network_input`."""


def _empty(entity: str, cols: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame(schema={entity: pl.Utf8, "time": pl.Datetime("us", "UTC")} | dict.fromkeys(cols, pl.Float64))


def _per(frame: pl.DataFrame, keys: list[str], **aggs: pl.Expr) -> pl.DataFrame:
    return frame.group_by(keys).agg(**aggs) if not frame.is_empty() else pl.DataFrame()


def _num(df: pl.DataFrame, c: str) -> pl.Expr:
    """Column c as float, or all-null when this frame has no such column (a device that lacks the field)."""
    return pl.col(c).cast(pl.Float64) if c in df.columns else pl.lit(None, pl.Float64)


def _has(df: pl.DataFrame, *cols: str) -> bool:
    return not df.is_empty() and all(c in df.columns for c in cols)


def host_input(store: Store, start: int | None, stop: int | None) -> pl.DataFrame:
    """host, time and HOST_INPUTS. EDAC counts are summed over memory controllers; the SMART state of the
    host's disks enters as the worst disk's reallocated/pending sectors and the number of unhealthy disks."""
    parts: list[pl.DataFrame] = []
    cpu = store.query("cpu", start, stop, tags={"cpu": "cpu-total"})
    if _has(cpu, "host", "usage_idle"):
        parts.append(cpu.select("host", "time", (100.0 - pl.col("usage_idle")).alias("cpu_used")))
    mem = store.query("mem", start, stop)
    if _has(mem, "host", "used_percent"):
        parts.append(mem.select("host", "time", pl.col("used_percent").cast(pl.Float64).alias("mem_used_percent")))
    sysm = store.query("system", start, stop)
    if _has(sysm, "host", "load1", "n_cpus"):
        parts.append(
            sysm.select("host", "time", (pl.col("load1") / pl.col("n_cpus").clip(lower_bound=1)).alias("load_per_cpu"))
        )
    edac = store.query("edac", start, stop)
    if _has(edac, "host", "ce_count"):
        ue = _num(edac, "ue_count").fill_null(0)
        parts.append(
            _per(
                edac,
                ["host", "time"],
                edac_ce=pl.col("ce_count").sum().cast(pl.Float64),
                edac_ue=ue.sum().cast(pl.Float64),
            )
        )
    temp = store.query("temp", start, stop)
    if _has(temp, "host", "temp"):
        parts.append(_per(temp, ["host", "time"], temp_max=pl.col("temp").max().cast(pl.Float64)))
    dio = store.query("diskio", start, stop)
    if _has(dio, "host", "io_time"):
        # Whole disks only (they carry serial tags; partitions would count the same I/O twice): busy time and
        # queue-weighted time, summed over the host's disks, stay counters (ms) for the feature function.
        whole = dio.filter(pl.col("serial_no").is_not_null()) if "serial_no" in dio.columns else dio
        weighted = _num(whole, "weighted_io_time")
        parts.append(
            _per(
                whole,
                ["host", "time"],
                diskio_io_time=pl.col("io_time").sum().cast(pl.Float64),
                diskio_weighted_io_time=weighted.sum().cast(pl.Float64),
            )
        )
    base = _outer(parts, "host", HOST_INPUTS[:8])
    smart = store.query("smart_device", start, stop)
    if not _has(smart, "host"):
        return base.with_columns(pl.lit(None, pl.Float64).alias(c) for c in HOST_INPUTS[8:])

    def col(c: str) -> pl.Expr:
        return _num(smart, c)

    unhealthy = (~pl.col("health_ok")).cast(pl.Float64) if "health_ok" in smart.columns else pl.lit(0.0)
    disks = _per(
        smart,
        ["host", "time"],
        disk_realloc_max=col("reallocated_sectors_count").max(),
        disk_pending_max=col("pending_sector_count").max(),
        disk_unhealthy=unhealthy.sum(),
    ).sort("host", "time")
    if base.is_empty():
        return _outer([disks], "host", HOST_INPUTS)
    # Disks are polled less often than hosts: each host sample carries its disks' latest state (never a later one).
    return (
        base.sort("host", "time")
        .join_asof(disks, on="time", by="host", strategy="backward", check_sortedness=False)
        .select("host", "time", *HOST_INPUTS)
    )


def network_input(store: Store, start: int | None, stop: int | None) -> pl.DataFrame:
    """link (`source/ifName`), time and NETWORK_INPUTS. `flaps` counts state changes so far (a counter): an
    ifOperStatus change between polls, or an ifLastChange that moved (a flap that came and went between two
    polls); `down_admin_up` is 1 while the link is down but administratively up; `in_error_ratio` is the share
    of received packets in error since the previous poll; `rx_dbm` is the interface's optical receive power
    where the device profile maps an optics sensor to the interface (tag ifName)."""
    iface = store.query("interface", start, stop)
    parts: list[pl.DataFrame] = []
    if _has(iface, "source", "ifName"):

        def col(c: str) -> pl.Expr:
            return _num(iface, c)

        d = iface.with_columns(pl.concat_str([pl.col("source"), pl.col("ifName")], separator="/").alias("link"))
        d = d.sort("link", "time")
        oper = col("ifOperStatus")
        last_change = col("ifLastChange")
        changed = (
            (oper != oper.shift(1).over("link")).fill_null(False)
            | (last_change != last_change.shift(1).over("link")).fill_null(False)
        ).cast(pl.Float64)
        packets = pl.sum_horizontal(
            *[col(c).fill_null(0) for c in ("ifHCInUcastPkts", "ifHCInMulticastPkts", "ifHCInBroadcastPkts")]
        )
        packets = pl.when(packets > 0).then(packets).otherwise(col("ifInUcastPkts"))
        d_err = col("ifInErrors").diff().over("link")
        d_pkt = packets.diff().over("link")
        ratio = pl.when((d_err >= 0) & (d_pkt + d_err > 0)).then(d_err / (d_pkt + d_err))
        parts.append(
            d.select(
                "link",
                "time",
                col("ifInErrors").alias("in_errors"),
                col("ifOutErrors").alias("out_errors"),
                col("ifInDiscards").alias("in_discards"),
                col("ifOutDiscards").alias("out_discards"),
                changed.cum_sum().over("link").alias("flaps"),
                ((oper == 2) & (col("ifAdminStatus") == 1)).cast(pl.Float64).alias("down_admin_up"),
                ratio.alias("in_error_ratio"),
            )
        )
    sens = store.query("snmp_sensor", start, stop)
    if _has(sens, "source", "ifName", "sensor_type", "reading"):
        s = sens.filter(pl.col("ifName").is_not_null()).with_columns(
            pl.concat_str([pl.col("source"), pl.col("ifName")], separator="/").alias("link")
        )
        rx = s.filter((pl.col("sensor_type") == "dBm") & pl.col("sensor").str.to_lowercase().str.contains("rx|receive"))
        if not rx.is_empty():
            parts.append(_per(rx, ["link", "time"], rx_dbm=pl.col("reading").cast(pl.Float64).min()))
        temp = s.filter(pl.col("sensor_type") == "celsius")
        if not temp.is_empty():
            parts.append(_per(temp, ["link", "time"], temp_c=pl.col("reading").cast(pl.Float64).max()))
    return _outer(parts, "link", NETWORK_INPUTS)


def _outer(parts: list[pl.DataFrame], entity: str, cols: tuple[str, ...]) -> pl.DataFrame:
    """Full outer join of per-measurement frames on (entity, time); absent columns are all-null."""
    parts = [p for p in parts if not p.is_empty()]
    if not parts:
        return _empty(entity, cols)
    out = parts[0]
    for p in parts[1:]:
        out = out.join(p, on=[entity, "time"], how="full", coalesce=True)
    out = out.with_columns(pl.lit(None, pl.Float64).alias(c) for c in cols if c not in out.columns)
    return out.select(entity, "time", *cols).sort(entity, "time")
