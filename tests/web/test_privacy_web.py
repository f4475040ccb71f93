"""Privacy in the browser: the workbench's customer panel shows an agent masked contact details,
and the admin page's checkbox lets an agent see them in full."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import ADMIN_PASSWORD, KefuProcess, Tenant, WebsocketPeer, sign_in, ws_url
from tests.web.test_workbench import sign_in_page, start_and_accept


def test_agents_see_masked_contact_details_until_an_admin_allows_them(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any
) -> None:
    agent = tenant.add_agent("Anna")
    page = new_context().new_page()
    sign_in_page(page, kefu_server, tenant, agent)
    response = httpx.post(
        f"{kefu_server.url}/api/v1/webchat/visitors",
        json={"account": tenant.slug, "display_name": "Li Lei", "phone": "138 1234 5678", "email": "lilei@example.com"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    visitor = response.json()
    customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", visitor["token"]))
    try:
        start_and_accept(page, kefu_server, customer, "Where is my parcel?")
        info = page.locator("#customer-info")
        expect(info).to_contain_text("138****5678")
        expect(info).to_contain_text("l***@example.com")
        expect(info).not_to_contain_text("1234 5678")
        expect(info).not_to_contain_text("lilei@")
    finally:
        customer.close()

    # The admin ticks "Sees phone/e-mail" for Anna.
    admin = new_context().new_page()
    admin.goto(kefu_server.url + "/admin")
    signin = admin.locator("#signin")
    signin.get_by_label("Account").fill(tenant.slug)
    signin.get_by_label("E-mail").fill(tenant.admin_email)
    signin.get_by_label("Password").fill(ADMIN_PASSWORD)
    signin.get_by_role("button", name="Sign in").click()
    row = admin.locator("#agents-table tbody tr", has_text="Anna")
    checkbox = row.get_by_label("Anna sees customers' phone numbers and e-mail addresses")
    expect(checkbox).not_to_be_checked()
    checkbox.check()
    row.get_by_role("button", name="Save").click()
    expect(
        admin.locator("#agents-table tbody tr", has_text="Anna").get_by_label(
            "Anna sees customers' phone numbers and e-mail addresses"
        )
    ).to_be_checked()

    token = sign_in(kefu_server, tenant.slug, agent["email"], agent["password"])
    shown = tenant.api("GET", f"/api/v1/customers/{visitor['customer_id']}", token=token).json()
    assert (shown["phone"], shown["email"]) == ("+86 138 1234 5678", "lilei@example.com")
