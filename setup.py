"""One build step beside pyproject.toml: the wheel carries the browser libraries of its pages.

`web/vendor.json` names each file kefu serves at /vendor/<name> and its path under node_modules
(the first part of the path is the npm package). The packages come exactly as web/package-lock.json
pins them: from web/node_modules when `npm ci` put the locked versions there (as `make` does),
otherwise from a fresh `npm ci` in a temporary folder. They are copied into the built package as
kefu/web/vendor/<name> and never into the source tree. An editable install skips this step: a
checkout serves web/node_modules itself (server/pages.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

WEB = Path(__file__).resolve().parent / "web"


def npm_package(relative: str) -> str:
    """The npm package a path under node_modules belongs to (`@scope/name` or `name`)."""
    parts = relative.split("/")
    return "/".join(parts[:2]) if parts[0].startswith("@") else parts[0]


def installed_version(node_modules: Path, package: str) -> str | None:
    try:
        manifest: dict[str, Any] = json.loads((node_modules / package / "package.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return str(manifest.get("version"))


def locked_node_modules(packages: set[str], scratch: Path) -> Path:
    """A node_modules folder holding `packages` at the versions of web/package-lock.json."""
    lock = json.loads((WEB / "package-lock.json").read_text(encoding="utf-8"))
    locked = {package: lock["packages"][f"node_modules/{package}"]["version"] for package in packages}
    existing = WEB / "node_modules"
    if all(installed_version(existing, package) == version for package, version in locked.items()):
        return existing
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(WEB / name, scratch / name)
    command = ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    try:
        subprocess.run(command, cwd=scratch, check=True)
    except FileNotFoundError:
        needs = "building kefu needs npm (Node.js) to fetch the browser libraries of web/package-lock.json"
        raise SystemExit(needs) from None
    return scratch / "node_modules"


class BuildWithBrowserLibraries(build_py):
    """`build_py`, then the files of web/vendor.json into kefu/web/vendor/ of the build."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        vendor: dict[str, str] = json.loads((WEB / "vendor.json").read_text(encoding="utf-8"))
        target = Path(self.build_lib) / "kefu" / "web" / "vendor"
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kefu-npm-") as scratch:
            node_modules = locked_node_modules({npm_package(path) for path in vendor.values()}, Path(scratch))
            for name, relative in vendor.items():
                shutil.copyfile(node_modules / relative, target / name)


setup(cmdclass={"build_py": BuildWithBrowserLibraries})
