"""kefu's web pages, their scripts and styles: the package data of `kefu.web`.

A wheel also carries the browser libraries of `vendor.json` in `vendor/` (setup.py copies them
from the npm lock's packages at build time); a checkout serves them from `node_modules/`.
"""
