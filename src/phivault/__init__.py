"""phivault: a secure-by-default FHIR R4 health-data server."""

__version__ = "0.1.0"
