"""The service layer: the one place where the steps of a request are put in order."""

from phivault.service.core import (
    Context,
    HistoryPage,
    ImportStats,
    Service,
    Version,
    WriteResult,
)

__all__ = ["Context", "HistoryPage", "ImportStats", "Service", "Version", "WriteResult"]
