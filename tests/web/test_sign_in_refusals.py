"""The sign-in forms say why a sign-in was refused, in the page's language: a locked-out user
(429 `locked_out`) on the agent workbench in English and on the supervisor page in Chinese."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from tests.web.conftest import ADMIN_PASSWORD, KefuProcess, Tenant


def _lock(dsn: str, email: str) -> None:
    """Lock the user out as 10 wrong passwords would (fast, and without using up the rate limit)."""

    async def lock() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "UPDATE users SET locked_until = now() + interval '15 minutes' WHERE lower(email) = lower($1)", email
            )
        finally:
            await conn.close()

    def in_thread() -> None:
        # A plain asyncio loop in a thread of its own: Playwright's loop runs in this one, and the
        # server code's trio-asyncio policy is installed in this process.
        loop = asyncio.DefaultEventLoopPolicy().new_event_loop()
        try:
            loop.run_until_complete(lock())
        finally:
            loop.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(in_thread).result()


@pytest.mark.parametrize(
    ("path", "locale", "expected"),
    [
        ("/agent", "en-US", "signing in is locked for 15 min"),
        ("/supervisor", "zh-CN", "登录已锁定 15 分钟"),
    ],
)
def test_a_locked_out_user_is_told_so_in_the_pages_language(
    kefu_server: KefuProcess,
    tenant: Tenant,
    new_context: Any,
    request: pytest.FixtureRequest,
    path: str,
    locale: str,
    expected: str,
) -> None:
    from playwright.sync_api import expect

    request.node.allowed_console_errors = ("the server responded with a status of 429",)
    _lock(kefu_server.dsn, tenant.admin_email)
    refused = httpx.post(
        f"{kefu_server.url}/api/v1/auth/sign-in",
        json={"account": tenant.slug, "email": tenant.admin_email, "password": ADMIN_PASSWORD},
        timeout=10,
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "locked_out")

    page = new_context(locale=locale).new_page()
    page.goto(kefu_server.url + path)
    page.locator("input[name=account]").fill(tenant.slug)
    page.locator("input[name=email]").fill(tenant.admin_email)
    page.locator("input[name=password]").fill(ADMIN_PASSWORD)
    page.locator("form button[type=submit]").first.click()
    error = page.locator("#signin-error")
    expect(error).to_contain_text(expected)
