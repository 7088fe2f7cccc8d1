"""Real FHIR clients against a real server: `phivault serve` started by the CLI on a free
loopback port, over a demo clinic (`init --generate-key-file`, `demo --patients 20`).

- fhirpy and fhirclient (SMART on FHIR Python client), with a bearer token from
  `phivault token issue`: create, read, search following `next` links, a transaction.
- fhirclient completes SMART Backend Services on its own (client_credentials with a
  private_key_jwt assertion, endpoints found in the CapabilityStatement) and reads.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.fhirsearch import FHIRSearch
from fhirclient.models.patient import Patient as SmartPatient
from fhirpy import SyncFHIRClient
from joserfc import jwt
from joserfc.jwk import ECKey

from phivault.access import clients
from phivault.access.runtime import AccessControl
from phivault.crypto.kek import KeyFileKeySource
from phivault.vault import open_vault

PHIVAULT = str(Path(sys.executable).with_name("phivault"))


@dataclass
class Server:
    base: str  # http://127.0.0.1:<port>/fhir
    root: str
    data: Path
    key: Path

    def token(self, scope: str = "system/*.cruds") -> str:
        out = subprocess.run(
            [PHIVAULT, "token", "issue", "--data", str(self.data), "--key-file", str(self.key),
             "--client", "real-clients", "--scope", scope],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cli(*args: str) -> None:
    subprocess.run([PHIVAULT, *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def backend_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": "k1"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, backend_key: ECKey) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("served")
    data, key = folder / "data", folder / "demo.key"
    _cli("init", "--data", str(data), "--generate-key-file", str(key))
    _cli("demo", "--data", str(data), "--key-file", str(key), "--patients", "20")
    # A SMART Backend Services client with its public key (what an admin registers).
    vault = open_vault(data, KeyFileKeySource(key))
    try:
        access = AccessControl.for_service(vault.service, vault.keyring)
        clients.register(
            access.store, "lab-feed", clients.BACKEND, "system/*.cruds",
            jwks={"keys": [backend_key.as_dict(private=False)]},
        )  # fmt: skip
    finally:
        vault.close()
    port = _free_port()
    proc = subprocess.Popen(
        [PHIVAULT, "serve", "--data", str(data), "--key-file", str(key),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{root}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("phivault serve did not start")
            time.sleep(0.2)
        yield Server(f"{root}/fhir", root, data, key)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _transaction(family: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": {"resourceType": "Patient", "name": [{"family": family}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                    "valueQuantity": {"value": 72, "unit": "/min"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def test_the_api_needs_a_token(server: Server) -> None:
    assert httpx.get(f"{server.base}/Patient").status_code == 401
    metadata = httpx.get(f"{server.base}/metadata").json()
    assert metadata["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    config = httpx.get(f"{server.base}/.well-known/smart-configuration")
    assert (
        config.status_code == 200 and "client_credentials" in config.json()["grant_types_supported"]
    )


def test_fhirpy_create_read_search_paging_transaction(server: Server) -> None:
    fhir = SyncFHIRClient(server.base, authorization=f"Bearer {server.token()}")
    created = fhir.resource("Patient", name=[{"family": "Fhirpyson", "given": ["Ada"]}])
    created.save()
    assert created["id"]
    read = fhir.reference("Patient", created["id"]).to_resource()
    assert read["name"][0]["family"] == "Fhirpyson"
    everyone = fhir.resources("Patient").limit(7).fetch_all()  # follows `next` links
    ids = [p["id"] for p in everyone]
    # 20 demo patients, the 3 honeytoken patients `init` seeds, and the one just created
    assert len(ids) == len(set(ids)) == 24
    assert fhir.resources("Patient").count() == 24
    reply = fhir.execute("", method="post", data=_transaction("Transacted"))
    assert reply["type"] == "transaction-response"
    assert [e["response"]["status"][:3] for e in reply["entry"]] == ["201", "201"]
    found = fhir.resources("Patient").search(family="Transacted").fetch_all()
    assert len(found) == 1


def test_fhirclient_with_a_script_token(server: Server) -> None:
    smart = smart_client.FHIRClient(
        settings={"app_id": "phivault-tests", "api_base": server.base + "/"}
    )
    smart.server.session.headers["Authorization"] = f"Bearer {server.token()}"
    new = SmartPatient({"resourceType": "Patient", "name": [{"family": "Smartson"}]})
    reply = new.create(smart.server)
    assert reply is not None and reply["resourceType"] == "Patient"
    rid = reply["id"]
    assert SmartPatient.read(rid, smart.server).name[0].family == "Smartson"
    search = FHIRSearch(SmartPatient, {"_count": "6"})
    pages = list(search.perform_iter(smart.server))  # follows `next` links
    assert len(pages) > 1
    seen = [e.resource.id for page in pages for e in page.entry or []]
    assert len(seen) == len(set(seen)) and rid in seen
    response = smart.server.post_json("", _transaction("Smartbundle")).json()
    result = Bundle(response)
    assert result.type == "transaction-response" and len(result.entry) == 2


def test_fhirclient_backend_services_flow(server: Server, backend_key: ECKey) -> None:
    """SMART Backend Services done by fhirclient itself: the token endpoint comes from
    the CapabilityStatement, the client authenticates with a signed JWT assertion."""
    vault = open_vault(server.data, KeyFileKeySource(server.key))
    try:
        row = AccessControl.for_service(vault.service, vault.keyring).store.client_by_name(
            "lab-feed"
        )
    finally:
        vault.close()
    assert row is not None
    token_url = f"{server.root}/oauth/token"
    claims = {
        "iss": row.client_id, "sub": row.client_id, "aud": token_url,
        "exp": int(time.time()) + 240, "jti": secrets.token_hex(12),
    }  # fmt: skip
    assertion = jwt.encode({"alg": "ES384", "kid": "k1"}, claims, backend_key, algorithms=["ES384"])
    smart = smart_client.FHIRClient(
        settings={
            "app_id": row.client_id,
            "api_base": server.base + "/",
            "jwt_token": assertion,
            "scope": "system/*.rs",
        }
    )
    smart.wants_patient = False  # a backend client has no launch patient
    smart.prepare()  # reads the CapabilityStatement: SMART security, token endpoint
    smart.authorize()  # client_credentials + private_key_jwt
    assert smart.ready
    search = SmartPatient.where(struct={"_count": "5"})
    patients = list(itertools.islice(search.perform_resources_iter(smart.server), 5))
    assert len(patients) == 5
    first = SmartPatient.read(patients[0].id, smart.server)
    assert first.id == patients[0].id
