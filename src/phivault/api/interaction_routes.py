"""Routes beyond the per-resource REST interactions: batch/transaction, PATCH,
Patient $everything and Bulk Data $export.

`create_app` puts these before the generic `{rtype}/{rid}` routes, which would otherwise
take `$export`, `$export-status/...` or `Patient/$export` for a type and an id.
"""

from __future__ import annotations

from starlette.routing import Route

from phivault.api.bundle_routes import BundleRoutes
from phivault.api.everything_routes import EverythingRoutes
from phivault.api.export_routes import ExportRoutes
from phivault.api.fhir_routes import FhirRoutes
from phivault.api.patch_routes import PatchRoutes
from phivault.config import Settings
from phivault.service import Service


def interaction_routes(service: Service, settings: Settings) -> list[Route]:
    base = settings.base_path
    bundles = BundleRoutes(FhirRoutes(service, settings))
    patch = PatchRoutes(service, settings)
    everything = EverythingRoutes(service, settings)
    export = ExportRoutes(service, settings)
    return [
        Route(base, bundles.bundle, methods=["POST"]),
        Route(f"{base}/", bundles.bundle, methods=["POST"]),
        *export.routes(),
        Route(f"{base}/Patient/{{rid}}/$everything", everything.everything, methods=["GET"]),
        Route(f"{base}/{{rtype}}/{{rid}}", patch.patch, methods=["PATCH"]),
        Route(f"{base}/{{rtype}}", patch.conditional_patch, methods=["PATCH"]),
    ]
