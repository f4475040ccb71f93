"""TLS through hypercorn's certificate settings, checked with a throwaway CA (trustme)."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from trio_websocket import open_websocket_url

from kefu.protocol import decode_server_frame
from kefu.server.accounts import create_account
from kefu.server.config import Config, ConfigError, load_config
from kefu.server.node import Node, serve
from tests.conftest import TEST_DATA_KEY, open_database


async def test_https_and_wss_with_a_certificate(database_dsn: str, tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_pem.write_to_path(str(keyfile))
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in certificate.cert_chain_pems[1:]:
        with certfile.open("ab") as chain:
            chain.write(pem.bytes())
    config = Config(
        port=0,
        database_url=database_dsn,
        data_dir=tmp_path,
        database_pool_size=3,
        shutdown_grace=1.0,
        tls_certfile=str(certfile),
        tls_keyfile=str(keyfile),
        data_key=TEST_DATA_KEY,
    )
    async with open_database(database_dsn) as database:
        slug = f"tls-{uuid.uuid4().hex[:8]}"
        await create_account(
            database, name="TLS", slug=slug, admin_email=f"admin@{slug}.example", admin_password="correct horse 1"
        )
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            node: Node = await nursery.start(serve, config)
        url = node.urls[0]
        assert url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(verify=client_context, timeout=10) as client:
            response = await client.get(f"{url}/healthz")
            assert response.status_code == 200
            # a client that does not trust the CA is refused
            async with httpx.AsyncClient(timeout=10) as untrusting:
                with pytest.raises(httpx.ConnectError):
                    await untrusting.get(f"{url}/healthz")
            visitor = await client.post(f"{url}/api/v1/webchat/visitors", json={"account": slug})
            assert visitor.status_code == 201, visitor.text
        # the websocket runs over TLS too
        wss = url.replace("https://", "wss://") + "/ws/customer?token=" + visitor.json()["token"]
        async with open_websocket_url(wss, ssl_context=client_context) as ws:
            welcome = decode_server_frame(await ws.get_message())
            assert welcome.TYPE == "welcome" and welcome.role == "customer"
        # plain HTTP on the TLS port gets nothing served
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(url.replace("https://", "http://") + "/healthz")
        nursery.cancel_scope.cancel()


def test_tls_settings_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="go together"):
        load_config(environ={"KEFU_TLS_CERTFILE": str(cert)})
    with pytest.raises(ConfigError, match="no file"):
        load_config(environ={"KEFU_TLS_CERTFILE": str(cert), "KEFU_TLS_KEYFILE": str(tmp_path / "missing.pem")})
