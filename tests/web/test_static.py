"""kefu serves its pages, its shared scripts and the npm-installed browser libraries."""

from __future__ import annotations

from typing import Any

import httpx

from tests.web.conftest import KefuProcess, screenshot


def test_index_page_and_shared_files(kefu_server: KefuProcess, new_context: Any) -> None:
    page = new_context().new_page()
    page.goto(kefu_server.url + "/")
    assert "kefu" in page.title()
    screenshot(page, "index")
    for path, kind in (
        ("/static/kefu-client.js", "javascript"),
        ("/static/i18n.js", "javascript"),
        ("/vendor/echarts.min.js", "javascript"),
    ):
        response = httpx.get(kefu_server.url + path, timeout=10)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"]
    assert httpx.get(kefu_server.url + "/vendor/other.js", timeout=10).status_code == 404
    assert httpx.get(kefu_server.url + "/static/../server/app.py", timeout=10).status_code == 404
    assert httpx.get(kefu_server.url + "/static/../__init__.py", timeout=10).status_code == 404
    assert httpx.get(kefu_server.url + "/vendor.json", timeout=10).status_code == 404
    favicon = httpx.get(kefu_server.url + "/favicon.ico", timeout=10)
    assert favicon.status_code == 200 and favicon.headers["content-type"].startswith("image/svg+xml")
    widget = httpx.get(kefu_server.url + "/widget.js", timeout=10)
    assert widget.status_code == 200 and widget.headers["access-control-allow-origin"] == "*"
