"""A wheel built from the repository, installed in a clean virtual environment, serves every page.

The wheel is built (`pip wheel`) from a copy of the repository's files (what git tracks or would
track, so nothing left in build/ by an earlier build sneaks in), with the checkout's
web/node_modules beside it as `make` leaves it. It is installed with its dependencies into a new
virtual environment, whose `kefu serve` then serves, from a folder outside the repository, every
page, script, style and browser library byte for byte as the repository holds them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.server.test_process import free_port, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"

pytestmark = pytest.mark.slow


def source_copy(into: Path) -> Path:
    """The repository's files (tracked, or untracked but not ignored) copied into `into`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    if (WEB / "node_modules").is_dir():
        (into / "web" / "node_modules").symlink_to(WEB / "node_modules", target_is_directory=True)
    return into


def build_wheel(tmp_path: Path) -> Path:
    source = source_copy(tmp_path / "source")
    dist = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(source)]
    subprocess.run(command, check=True, timeout=300)
    (wheel,) = dist.glob("kefu-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    """A new virtual environment with the wheel and its dependencies; returns its `kefu` script."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)]
    subprocess.run(pip, check=True, timeout=600)
    return venv / "bin" / "kefu"


def expected_files() -> dict[str, Path]:
    """Each URL path the server must serve, and the file of the checkout it must serve."""
    expected = {"/": WEB / "index.html", "/widget.js": WEB / "widget.js", "/favicon.ico": WEB / "static/favicon.svg"}
    expected |= {f"/{page}": WEB / f"{page}.html" for page in ("agent", "supervisor", "admin", "chat")}
    for path in sorted((WEB / "static").rglob("*")):
        if path.is_file():
            expected[f"/static/{path.relative_to(WEB / 'static').as_posix()}"] = path
    vendor: dict[str, str] = json.loads((WEB / "vendor.json").read_text(encoding="utf-8"))
    expected |= {f"/vendor/{name}": WEB / "node_modules" / relative for name, relative in vendor.items()}
    assert "/vendor/echarts.min.js" in expected
    return expected


def test_the_wheel_serves_every_page(database_dsn: str, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "kefu/web/vendor/echarts.min.js" in names
    assert any(name.startswith("kefu/server/migrations/") and name.endswith(".sql") for name in names)
    assert not [name for name in names if "node_modules" in name or name.endswith("package-lock.json")]

    venv = tmp_path / "venv"
    kefu = install(wheel, venv)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import kefu.web; print(kefu.web.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEFU_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {
        "KEFU_DATABASE_URL": database_dsn,
        "KEFU_DATA_DIR": str(tmp_path / "data"),
        "KEFU_PORT": str(port),
        "KEFU_HOST": "127.0.0.1",
        "KEFU_SHUTDOWN_GRACE": "2",
        "KEFU_DATABASE_POOL_SIZE": "2",
    }
    log_path = tmp_path / "kefu.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(kefu), "serve"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(process, f"{base}/readyz", log_path, timeout=60)
        with httpx.Client(base_url=base, timeout=10) as client:
            for url, path in expected_files().items():
                response = client.get(url)
                assert response.status_code == 200, (url, response.text[:200])
                assert response.content == path.read_bytes(), f"{url} differs from {path.relative_to(ROOT)}"
            assert client.get("/vendor/other.js").status_code == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log_path.read_text()
    finally:
        stop(process)
