"""The admin pages: a department, a round-robin queue in it, an agent in it with capacity 3, an
account-wide canned response and business hours, made in the browser and checked over REST; a
custom role made, given, refused and changed in the browser, and its holder's access checked."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.protocol.permissions import Permission
from kefu.server.roles import list_permissions
from tests.web.conftest import ADMIN_PASSWORD, KefuProcess, Tenant, screenshot, sign_in


def _description(permission: Permission) -> str:
    """The permission's English description, as the Roles form labels its checkbox."""
    (described,) = [p.description for p in list_permissions() if p.name == permission]
    return described


def test_admin_sets_up_the_contact_center(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import expect

    # The one refused request below is deliberate; Chromium logs any 4xx fetch as a console error.
    request.node.allowed_console_errors = ("the server responded with a status of 400",)

    page = new_context().new_page()
    page.goto(kefu_server.url + "/admin")
    signin = page.locator("#signin")
    signin.get_by_label("Account").fill(tenant.slug)
    signin.get_by_label("E-mail").fill(tenant.admin_email)
    signin.get_by_label("Password").fill(ADMIN_PASSWORD)
    signin.get_by_role("button", name="Sign in").click()
    expect(page.locator("#app")).to_be_visible()

    page.locator("#department-name").fill("Billing")
    page.locator("#department-form").get_by_role("button", name="Add").click()
    expect(page.locator("#departments-list input")).to_have_value("Billing")

    # A bad value shows the server's error next to the form.
    page.locator("#hours-timezone").fill("Mars/Olympus")
    page.locator("#hours-form").get_by_role("button", name="Save").click()
    expect(page.locator("#hours-error")).to_contain_text("timezone")

    page.locator("#queue-name").fill("Billing queue")
    page.locator("#queue-department").select_option(label="Billing")
    page.locator("#queue-strategy").select_option("round_robin")
    page.locator("#queue-timeout").fill("25")
    page.locator("#queue-form").get_by_role("button", name="Save").click()
    expect(page.locator("#queues-table tbody tr")).to_have_count(2)  # and the account's Default

    page.locator("#agent-name").fill("Bea")
    page.locator("#agent-email").fill(f"bea@{tenant.slug}.example")
    page.locator("#agent-password").fill("bea password 1")
    page.locator("#agent-capacity").fill("3")
    page.locator("#agent-departments").get_by_label("Billing").check()
    page.locator("#agent-form").get_by_role("button", name="Create").click()
    expect(page.locator("#agents-table tbody tr")).to_have_count(2)

    page.locator("#canned-shortcut").fill("hello")
    page.locator("#canned-title").fill("Greeting")
    page.locator("#canned-body").fill("Hello, how can I help?")
    page.locator("#canned-form").get_by_role("button", name="Save").click()
    expect(page.locator("#canned-table tbody tr")).to_have_count(1)

    page.locator("#hours-timezone").fill("Asia/Shanghai")
    page.locator("#hours-mon").fill("09:00-12:00, 13:00-18:00")
    page.locator("#hours-fri").fill("09:00-17:00")
    page.locator("#hours-form").get_by_role("button", name="Save").click()
    expect(page.locator("#hours-saved")).to_have_text("Saved.")
    expect(page.locator("#hours-error")).to_have_text("")

    departments = tenant.api("GET", "/api/v1/departments").json()["departments"]
    assert [d["name"] for d in departments] == ["Billing"]
    billing = departments[0]["id"]
    (queue,) = [q for q in tenant.api("GET", "/api/v1/queues").json()["queues"] if q["name"] != "Default"]
    assert queue["name"] == "Billing queue" and queue["strategy"] == "round_robin"
    assert queue["department_id"] == billing and queue["offer_timeout_seconds"] == 25
    bea = next(a for a in tenant.api("GET", "/api/v1/agents").json()["agents"] if a["display_name"] == "Bea")
    assert bea["max_concurrent_conversations"] == 3 and [d["id"] for d in bea["departments"]] == [billing]
    (canned,) = tenant.api("GET", "/api/v1/canned-responses").json()["canned_responses"]
    assert (canned["scope"], canned["shortcut"], canned["title"]) == ("account", "hello", "Greeting")
    hours = tenant.api("GET", "/api/v1/business-hours").json()
    assert hours["timezone"] == "Asia/Shanghai"
    assert hours["schedule"]["mon"] == ["09:00-12:00", "13:00-18:00"] and hours["schedule"]["fri"] == ["09:00-17:00"]
    assert hours["schedule"]["sun"] == []

    # Editing an agent's capacity from the table.
    row = page.locator("#agents-table tbody tr", has_text="Bea")
    row.get_by_label("Capacity of Bea").fill("4")
    # The field holds what was typed at once; wait for the save's answer before reading the API.
    with page.expect_response(
        lambda response: response.request.method == "PATCH" and f"/api/v1/agents/{bea['id']}" in response.url
    ) as saved:
        row.get_by_role("button", name="Save").click()
    assert saved.value.status == 200
    expect(page.locator("#agents-table tbody tr", has_text="Bea").get_by_label("Capacity of Bea")).to_have_value("4")
    assert tenant.api("GET", f"/api/v1/agents/{bea['id']}").json()["max_concurrent_conversations"] == 4
    screenshot(page, "admin")

    page.get_by_label("Language").select_option("zh-CN")
    expect(page.get_by_role("heading", name="营业时间")).to_be_visible()
    expect(page.get_by_label("星期一")).to_have_value("09:00-12:00, 13:00-18:00")
    screenshot(page, "admin-zh")


def _sign_in_as_admin(page: Any, server: KefuProcess, tenant: Tenant) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/admin#roles")
    page.locator("#signin-account").fill(tenant.slug)
    page.locator("#signin-email").fill(tenant.admin_email)
    page.locator("#signin-password").fill(ADMIN_PASSWORD)
    page.locator("#signin").locator("button[type=submit]").click()
    expect(page.locator("#roles-table tbody tr").first).to_be_visible()


def test_admin_defines_a_custom_role_and_its_holder_gets_exactly_its_permissions(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import expect

    # The refused requests below are deliberate; Chromium logs any 4xx fetch as a console error.
    request.node.allowed_console_errors = ("the server responded with a status of 409",)
    page = new_context(viewport={"width": 1440, "height": 900}).new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    _sign_in_as_admin(page, kefu_server, tenant)
    roles, form = page.locator("#roles-table tbody"), page.locator("#role-form")
    expect(roles.locator("tr")).to_have_count(3)  # the built-in roles
    expect(roles.locator("tr").first.locator("th")).to_have_text("Admin")

    # A built-in role's name is refused, with the code's translation.
    form.get_by_label("Name").fill("Supervisor")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#role-error")).to_have_text(
        "Built-in roles cannot be changed or deleted, and their names are reserved."
    )

    form.get_by_label("Name").fill("Night shift")
    form.get_by_label(_description(Permission.DIRECTORY_READ)).check()
    form.get_by_label("Go online, take offers", exact=False).check()
    form.get_by_role("button", name="Save").click()
    night = roles.locator('tr[data-role="Night shift"]')
    expect(night.locator("td").first).to_have_text("conversations.handle, directory.read")
    expect(page.locator("#role-error")).to_have_text("")

    # Given to a new agent from the agent form, whose role choices list it.
    email = f"nina@{tenant.slug}.example"
    agent_form = page.locator("#agent-form")
    page.locator("#agent-name").fill("Nina")
    page.locator("#agent-email").fill(email)
    page.locator("#agent-password").fill("nina password 1")
    page.locator("#agent-role").select_option("Night shift")
    agent_form.get_by_role("button", name="Create").click()
    expect(page.locator("#agents-table tbody tr", has_text="Nina")).to_contain_text("Night shift")
    expect(night.locator("td").nth(1)).to_have_text("1")
    expect(page.locator("#agent-role")).to_have_value("agent")  # the form went back to its default

    # The agent signs in: what the role allows is allowed, nothing else.
    token = sign_in(kefu_server, tenant.slug, email, "nina password 1")
    assert tenant.api("GET", "/api/v1/roles", token=token).status_code == 200
    refused = tenant.api("POST", "/api/v1/roles", token=token, json={"name": "Mine", "permissions": []})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")

    # A held role is not deleted; changing its permissions signs its holder out.
    night.get_by_role("button", name="Delete Night shift").click()
    expect(page.locator("#roles-error")).to_have_text("Someone holds this role: give them another role first.")
    night.get_by_role("button", name="Edit Night shift").click()
    expect(form.get_by_label("Name")).to_have_value("Night shift")
    form.get_by_label(_description(Permission.DIRECTORY_READ)).uncheck()
    form.get_by_label(_description(Permission.REPORTS_VIEW)).check()
    form.get_by_role("button", name="Save").click()
    expect(night.locator("td").first).to_have_text("conversations.handle, reports.view")
    assert tenant.api("GET", "/api/v1/me", token=token).status_code == 401
    token = sign_in(kefu_server, tenant.slug, email, "nina password 1")
    assert tenant.api("GET", "/api/v1/roles", token=token).status_code == 403
    (role,) = [r for r in tenant.api("GET", "/api/v1/roles").json()["roles"] if not r["built_in"]]
    assert (role["name"], role["permissions"], role["holders"]) == (
        "Night shift",
        ["conversations.handle", "reports.view"],
        1,
    )
    page.locator("#roles").scroll_into_view_if_needed()
    screenshot(page, "admin-roles-1440-en")

    page.get_by_label("Language").select_option("zh-CN")
    expect(page.get_by_role("heading", name="角色", exact=True)).to_be_visible()
    expect(page.locator("#role-permissions")).to_contain_text("查看过往时段的报表")
    expect(roles.locator("tr").first.locator("th")).to_have_text("管理员")
    form.get_by_label("名称").fill("Admin")
    form.get_by_role("button", name="保存").click()
    expect(page.locator("#role-error")).to_have_text("内置角色不能修改或删除，其名称也不能使用。")
    screenshot(page, "admin-roles-1440-zh-CN")

    for language in ("en", "zh-CN"):
        phone = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, locale=language).new_page()
        _sign_in_as_admin(phone, kefu_server, tenant)
        expect(phone.locator('#roles-table tbody tr[data-role="Night shift"]')).to_be_visible()
        phone.locator("#roles").scroll_into_view_if_needed()
        screenshot(phone, f"admin-roles-390-{language}")
