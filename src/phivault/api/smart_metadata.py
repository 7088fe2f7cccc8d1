"""The CapabilityStatement of a server with access control on: it declares SMART on FHIR
security (rest.security: the service code and the OAuth endpoints), so that SMART
clients (fhirclient, fhirpy, EHR apps) find where to authorize and get tokens."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from phivault.api.fhir_routes import FhirRoutes
from phivault.api.http import check_accept, fhir_json

_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def smart_security(root: str) -> dict[str, Any]:
    endpoints = {
        "authorize": f"{root}/oauth/authorize",
        "token": f"{root}/oauth/token",
        "revoke": f"{root}/oauth/revoke",
    }
    return {
        "extension": [
            {
                "url": _OAUTH_URIS,
                "extension": [{"url": k, "valueUri": v} for k, v in endpoints.items()],
            }
        ],
        "service": [{"coding": [{"system": _SERVICE, "code": "SMART-on-FHIR"}]}],
        "description": "OAuth 2.0 bearer tokens (SMART App Launch 2, SMART Backend Services)",
    }


def secured_metadata(fhir: FhirRoutes) -> Any:
    async def metadata(request: Request) -> Response:
        check_accept(request)
        statement = fhir.capability_statement(request)
        security = smart_security(str(request.base_url).rstrip("/"))
        rests = [{**rest, "security": security} for rest in statement.get("rest", [])]
        return fhir_json({**statement, "rest": rests})

    return metadata
