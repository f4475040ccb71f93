"""Who may open a page, and which admin sections they see, follow the signed-in user's
permissions (`permissions` of /api/v1/me), never the name of their role: a custom role holding
only `conversations.monitor` opens the supervisor dashboard and is refused the admin page and
the workbench, in the page's language; one holding only `queues.manage` sees only the queues."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import AGENT_PASSWORD, KefuProcess, Tenant, screenshot

ADMIN_REFUSAL = (
    "Your role does not give access to this page. It needs one of these permissions: "
    "directory.manage, roles.manage, queues.manage, canned.manage_shared, business_hours.manage."
)
WORKBENCH_REFUSAL_ZH = "您的角色无权打开此页面，需要以下权限之一：conversations.handle。"


def _custom_role_user(tenant: Tenant, role: str, *permissions: str) -> dict[str, Any]:
    response = tenant.api("POST", "/api/v1/roles", json={"name": role, "permissions": list(permissions)})
    assert response.status_code == 201, response.text
    user = tenant.add_agent(role.split()[0], role=role)
    assert user["role"] == role
    return user


def _sign_in(page: Any, tenant: Tenant, user: dict[str, Any]) -> None:
    page.locator("#signin-account").fill(tenant.slug)
    page.locator("#signin-email").fill(user["email"])
    page.locator("#signin-password").fill(AGENT_PASSWORD)
    page.locator("#signin-password").press("Enter")


def test_a_monitor_opens_the_dashboard_and_is_refused_the_admin_page_and_the_workbench(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any
) -> None:
    from playwright.sync_api import expect

    monitor = _custom_role_user(tenant, "Floor monitor", "conversations.monitor")

    page = new_context().new_page()
    page.goto(kefu_server.url + "/supervisor")
    _sign_in(page, tenant, monitor)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#who")).to_have_text(monitor["display_name"])
    expect(page.locator("#signin")).to_be_hidden()

    # The same tab's token (sessionStorage) opens /admin: refused before anything is shown.
    page.goto(kefu_server.url + "/admin")
    expect(page.locator("#signin-error")).to_have_text(ADMIN_REFUSAL)
    expect(page.locator("#app")).to_be_hidden()
    # and so is signing in on it
    _sign_in(page, tenant, monitor)
    expect(page.locator("#signin-error")).to_have_text(ADMIN_REFUSAL)
    expect(page.locator("#app")).to_be_hidden()
    screenshot(page, "admin-refused-en")

    workbench = new_context(locale="zh-CN").new_page()
    workbench.goto(kefu_server.url + "/agent")
    _sign_in(workbench, tenant, monitor)
    expect(workbench.locator("#signin-error")).to_have_text(WORKBENCH_REFUSAL_ZH)
    expect(workbench.locator("#workbench")).to_be_hidden()
    expect(workbench.locator("#connection")).to_have_attribute("data-state", "offline")
    screenshot(workbench, "agent-refused-zh-CN")


def test_a_queue_keeper_sees_only_the_queues_section(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any
) -> None:
    from playwright.sync_api import expect

    department = tenant.api("POST", "/api/v1/departments", json={"name": "Billing"}).json()
    queue = tenant.api("POST", "/api/v1/queues", json={"name": "Billing queue", "department_id": department["id"]})
    assert queue.status_code == 201, queue.text
    keeper = _custom_role_user(tenant, "Queue keeper", "queues.manage")

    page = new_context().new_page()
    page.goto(kefu_server.url + "/admin")
    _sign_in(page, tenant, keeper)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator('#queues-table tbody tr[data-queue-id="' + queue.json()["id"] + '"]')).to_be_visible()
    for hidden in ("agents", "groups", "roles", "canned", "hours"):
        expect(page.locator("#" + hidden)).to_be_hidden()
    expect(page.locator("#queues")).to_be_visible()
    expect(page.locator(".tabs li:visible")).to_have_text(["Queues"])
    expect(page.locator("#load-error")).to_have_text("")
    # Without directory.read the department is shown by its id, and editing the queue keeps it.
    page.get_by_role("button", name="Edit Billing queue").click()
    expect(page.locator("#queue-department")).to_have_value(department["id"])
    screenshot(page, "admin-queues-only")
