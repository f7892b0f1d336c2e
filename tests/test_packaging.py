"""A built wheel, installed outside the checkout, finds the data pmaintd ships.

The repo keeps `collectors/`, `models/`, `grafana/` and `systemd/` at the top level and links them in as
`pmaintd/share/*` symlinks; a wheel cannot hold symlinks, so this checks that setuptools copied their
contents and that `pmaintd.resources` resolves them inside the install, never in the source tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from pmaintd.resources import SHIPPED

ROOT = Path(__file__).resolve().parent.parent


def _shipped_files() -> dict[str, list[str]]:
    """Each shipped folder's files in the checkout, relative to the folder."""
    return {
        name: sorted(str(p.relative_to(ROOT / name)) for p in (ROOT / name).rglob("*") if p.is_file())
        for name in SHIPPED
    }


def test_wheel_installed_elsewhere_finds_shipped_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("pmaintd", *SHIPPED):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    assert (src / "pmaintd/share/systemd").is_symlink()

    py = sys.executable
    build = subprocess.run(
        [py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("pmaintd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "pmaintd = pmaintd.cli:main" in zf.read(entry_points).decode()

    target = tmp_path / "site"
    inst = subprocess.run(
        [py, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert inst.returncode == 0, inst.stderr

    expected = {k: v for k, v in _shipped_files().items() if v}
    assert {"systemd", "grafana", "collectors"} <= set(expected), "the checkout ships these folders"
    probe = (
        "import json, sys, pmaintd\n"
        "from pmaintd.resources import shipped_path\n"
        f"names = {sorted(expected)!r}\n"
        "print(json.dumps({'package': pmaintd.__file__, **{n: str(shipped_path(n)) for n in names}}))\n"
    )
    # -S: no site-packages, so the checkout's editable install cannot answer instead of the wheel.
    run = subprocess.run(
        [py, "-S", "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    paths = json.loads(run.stdout)
    assert Path(paths.pop("package")).resolve().is_relative_to(target)
    for name, where in paths.items():
        folder = Path(where)
        assert folder.resolve().is_relative_to(target.resolve()), (name, where)
        assert not folder.is_symlink() and folder.is_dir()
        for rel in expected[name]:
            installed = folder / rel
            assert installed.is_file() and not installed.is_symlink(), installed
            assert installed.read_bytes() == (ROOT / name / rel).read_bytes(), installed
