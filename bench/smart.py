"""Parse time per device for smartctl outputs: pySMART (text) path vs JSON path, over the recorded corpus.

Prints, per path, the median and p95 time to parse one device's output (each file parsed --repeat times,
its median taken), devices/s at the median, and ratios against references measured in the same run:
`json.loads` alone (the floor any JSON path pays) and the JSON path itself. The `--json=o` row joins the same
real device's text and JSON recordings (the two pairs py-SMART recorded) into one document, as the collector
receives it: pySMART on the text plus the JSON completion.

    nice -n 10 .venv/bin/python bench/smart.py [--repeat 7] [--dir tests/collect/smart/testdata/smartctl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from pmaintd.collect.smart_parse import SmartParseError, parse_json, parse_text

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "tests" / "collect" / "smart" / "testdata" / "smartctl"
PAIRS = [
    ("pysmart__singletests__nvme_5_issue_46__-d_nvme_--all__dev_nvme0.txt",
     "pysmart__singletests__nvme_5_issue_46__nvmessd.json"),
    ("pysmart__singletests__sata_hdd_1_issue46__-d_ata_--all__dev_sdau.txt",
     "pysmart__singletests__sata_hdd_1_issue46__heliumhdd.json"),
]  # fmt: skip


def per_file_seconds(fn: Callable[[str], object], docs: list[str], repeat: int) -> list[float]:
    """Median over `repeat` runs of fn(doc), for each doc."""
    out = []
    for doc in docs:
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn(doc)
            runs.append(time.perf_counter() - t)
        out.append(statistics.median(runs))
    return out


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def device_docs(folder: Path) -> tuple[list[str], list[str]]:
    """(text outputs, JSON outputs) that parse as one device's report."""
    texts, jsons = [], []
    for p in sorted(folder.iterdir()):
        if p.suffix not in (".txt", ".json"):
            continue
        doc = p.read_bytes().decode("utf-8", "ignore")
        is_json = doc.lstrip().startswith("{")
        try:
            (parse_json if is_json else parse_text)(doc)
        except SmartParseError:
            continue
        (jsons if is_json else texts).append(doc)
    return texts, jsons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    texts, jsons = device_docs(args.dir)
    combined = []
    for t, j in PAIRS:
        doc = json.loads((args.dir / j).read_text())
        doc["smartctl"]["output"] = (args.dir / t).read_text().splitlines()
        combined.append(json.dumps(doc))

    rows = [
        ("text -a/-x via pySMART", per_file_seconds(parse_text, texts, args.repeat)),
        ("--json via JSON path", per_file_seconds(parse_json, jsons, args.repeat)),
        ("--json=o (pySMART + JSON)", per_file_seconds(parse_json, combined, args.repeat)),
        ("reference: json.loads only", per_file_seconds(json.loads, jsons, args.repeat)),
    ]
    json_med = statistics.median(rows[1][1])
    ref_med = statistics.median(rows[3][1])
    print(f"smartctl parse time per device, {args.repeat} runs per file, corpus {args.dir}")
    head = ("path", "devices", "median ms", "p95 ms", "dev/s", "x JSON path", "x json.loads")
    print(f"{head[0]:<30} {head[1]:>7} {head[2]:>10} {head[3]:>8} {head[4]:>8} {head[5]:>12} {head[6]:>13}")
    for name, xs in rows:
        med = statistics.median(xs)
        print(
            f"{name:<30} {len(xs):>7} {med * 1e3:>10.3f} {p95(xs) * 1e3:>8.3f} {1 / med:>8.0f} "
            f"{med / json_med:>12.2f} {med / ref_med:>13.2f}"
        )


if __name__ == "__main__":
    main()
