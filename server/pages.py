"""The web pages: the files of `web/`, installed as the package `kefu.web`, and the browser libraries.

Pages, widget.js and /static come from the installed package (importlib.resources), so a wheel
serves what a checkout serves. The browser libraries named in web/vendor.json come from
kefu/web/vendor/ in a wheel (setup.py copies them there at build time) or, in an editable
checkout, from web/node_modules (installed by `make` with `npm ci`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from quart import Blueprint, Response, jsonify, send_from_directory


def _web_folder() -> Path:
    folder = resources.files("kefu.web")
    if not isinstance(folder, Path):  # e.g. imported from a zip file
        raise RuntimeError(f"kefu's web pages must be installed as files, not {folder!r}")
    return folder


WEB_DIR = _web_folder()
"""The installed `kefu.web` package: web/ of a checkout, kefu/web/ of a wheel."""

WEB_PAGES = ("agent", "supervisor", "admin", "chat")
"""Pages served at /<name> from web/<name>.html."""

VENDOR_FILES: dict[str, str] = json.loads((WEB_DIR / "vendor.json").read_text(encoding="utf-8"))
"""Browser libraries served at /vendor/<name>: their path under node_modules (see web/package.json)."""

pages = Blueprint("pages", __name__)


def vendor_path(name: str) -> Path | None:
    """Where the browser library `name` is: the wheel's copy, else the checkout's node_modules."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        return None
    built = WEB_DIR / "vendor" / name
    return built if built.is_file() else WEB_DIR / "node_modules" / relative


def _no_cache(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


def _not_found(code: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), 404


@pages.get("/")
async def index() -> Response:
    return await send_from_directory(WEB_DIR, "index.html")


def _page(name: str) -> None:
    async def page() -> Response:
        return _no_cache(await send_from_directory(WEB_DIR, f"{name}.html"))

    pages.add_url_rule(f"/{name}", f"page_{name}", page, methods=["GET"])


for _name in WEB_PAGES:
    _page(_name)


@pages.get("/favicon.ico")
async def favicon() -> Response:
    return await send_from_directory(WEB_DIR / "static", "favicon.svg", mimetype="image/svg+xml")


@pages.get("/widget.js")
async def widget_script() -> Response:
    response = await send_from_directory(WEB_DIR, "widget.js")
    response.headers["Access-Control-Allow-Origin"] = "*"  # embedded on other sites
    response.headers["Cache-Control"] = "no-cache"
    return response


@pages.get("/static/<path:path>")
async def static_file(path: str) -> Response:
    return _no_cache(await send_from_directory(WEB_DIR / "static", path))


@pages.get("/vendor/<name>")
async def vendor_file(name: str) -> Response | tuple[Response, int]:
    """Third-party browser files: a copy in the wheel, or web/node_modules of a checkout."""
    path = vendor_path(name)
    if path is None:
        return _not_found("not_found", "no such file")
    if not path.is_file():
        return _not_found("not_installed", "browser libraries are missing: run `make run` to install them")
    response = await send_from_directory(path.parent, path.name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
