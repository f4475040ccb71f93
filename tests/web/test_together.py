"""The whole contact center in browsers: a customer on the widget, an agent on the workbench and a
supervisor on the dashboard, three browser contexts on one running server."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import AGENT_PASSWORD, KefuProcess, Tenant, screenshot
from tests.web.test_widget import open_widget, send
from tests.web.test_workbench import sign_in_page


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour, big enough to be seen in the screenshots."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_customer_and_agent_talk_with_attachments_while_the_supervisor_watches(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any
) -> None:
    anna = tenant.add_agent("Anna", max_concurrent_conversations=3)
    sue = tenant.add_agent("Sue", role="supervisor")

    dashboard = new_context().new_page()
    dashboard.goto(kefu_server.url + "/supervisor")
    dashboard.get_by_label("Account").fill(tenant.slug)
    dashboard.get_by_label("E-mail").fill(sue["email"])
    dashboard.get_by_label("Password").fill(AGENT_PASSWORD)
    dashboard.get_by_role("button", name="Sign in").click()
    expect(dashboard.locator("#connection")).to_have_attribute("data-state", "online")

    workbench = new_context().new_page()
    sign_in_page(workbench, kefu_server, tenant, anna)
    anna_row = dashboard.locator(f'#agents tr[data-agent-id="{anna["id"]}"]')
    expect(anna_row.locator(".status")).to_have_attribute("data-status", "online", timeout=10000)
    expect(anna_row.locator(".load")).to_have_text("0")

    customer = new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    panel = open_widget(customer, kefu_server, tenant.slug)
    send(customer, "Hello, the parcel arrived broken")

    # the offer reaches the workbench; Anna takes it and sees what the customer wrote
    workbench.click("#view-offers")
    accept = workbench.locator(".offer .accept")
    expect(accept).to_have_count(1, timeout=15000)
    accept.click()
    expect(workbench.locator("#events .message.incoming", has_text="the parcel arrived broken")).to_have_count(1)
    expect(panel.locator(".kw-note", has_text="Anna joined")).to_be_visible()

    # the supervisor sees the conversation answered and Anna's load change
    expect(anna_row.locator(".load")).to_have_text("1", timeout=10000)
    expect(dashboard.locator("#queues tr .answered").first).to_have_text("1", timeout=10000)

    # they talk, with a photo each way
    workbench.fill("#composer-text", "I am sorry! Could you send a photo?")
    workbench.press("#composer-text", "Enter")
    expect(panel.locator(".kw-agent", has_text="Could you send a photo?")).to_be_visible()
    customer.locator(".kw-form input[type=file]").set_input_files(
        {"name": "broken.png", "mimeType": "image/png", "buffer": solid_png(120, 80, (200, 60, 60))}
    )
    incoming = workbench.locator("#events .incoming img.media")
    expect(incoming).to_have_count(1, timeout=10000)
    workbench.wait_for_function(
        "() => { const i = document.querySelector('#events .incoming img.media');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    label = solid_png(96, 64, (40, 120, 200))
    workbench.set_input_files("#attach", files=[{"name": "label.png", "mimeType": "image/png", "buffer": label}])
    expect(panel.locator(".kw-agent img")).to_have_js_property("naturalWidth", 96, timeout=10000)

    screenshot(customer, "together-customer")
    screenshot(workbench, "together-agent")
    screenshot(dashboard, "together-dashboard")

    # Anna closes it: the customer is told, and the dashboard shows her load back at 0
    workbench.fill("#wrap-up-code", "damaged-parcel")
    workbench.click("#close-form button[type=submit]")
    expect(panel.locator(".kw-note", has_text="ended")).to_be_visible(timeout=10000)
    expect(anna_row.locator(".load")).to_have_text("0", timeout=10000)
