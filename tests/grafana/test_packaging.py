"""grafana-client (the `[grafana]` extra) installed beside influxdb-client without breaking it.

grafana-client depends on urllib3-future, whose wheel overwrites the files of urllib3 in site-packages;
influxdb-client needs the real urllib3. scripts/install-test-deps.sh installs urllib3-future built from
source with URLLIB3_NO_OVERRIDE=1; these tests fail if that ever stops holding.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path
from typing import Any

import pytest


def test_urllib3_is_the_real_one_next_to_grafana_client() -> None:
    import grafana_client
    import urllib3

    assert grafana_client.__version__
    assert urllib3.__version__ == md.version("urllib3"), "urllib3-future overwrote urllib3"
    owned = {Path(str(f)).as_posix() for f in md.files("urllib3") or []}
    assert "urllib3/__init__.py" in owned
    future = {Path(str(f)).as_posix() for f in md.files("urllib3-future") or []}
    assert not any(f.startswith("urllib3/") for f in future), "urllib3-future installed files into urllib3/"


@pytest.mark.service
def test_influxdb_client_still_talks_http(influxd: Any) -> None:
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=influxd.url, token="unused", org="-", timeout=5000) as client:
        assert client.ping() is True
