"""The one error hierarchy of phivault.

Every error carries its HTTP status, its FHIR issue code (IssueType value set) and its CLI
exit code. The API layer turns any `PhivaultError` into an OperationOutcome and the CLI
turns it into a message and an exit code; nothing else formats errors.

Messages must never contain PHI: they name element paths, parameter names and resource
types, never values taken from a resource body.
"""

from __future__ import annotations

from typing import ClassVar


class PhivaultError(Exception):
    """Base of every error phivault raises on purpose."""

    http_status: ClassVar[int] = 500
    issue_code: ClassVar[str] = "exception"
    exit_code: ClassVar[int] = 1
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, *, expression: list[str] | None = None) -> None:
        self.message = message or self.default_message
        # FHIRPath-style locations of the problem (e.g. "Patient.birthDate"); never values.
        self.expression = expression or []
        super().__init__(self.message)


# --- client errors -------------------------------------------------------------------------


class BadRequest(PhivaultError):
    http_status = 400
    issue_code = "invalid"
    exit_code = 2
    default_message = "bad request"


class MalformedJson(BadRequest):
    issue_code = "structure"
    default_message = "the request body is not valid JSON"


class InvalidResource(PhivaultError):
    """A resource that FHIR R4 rejects (structure, cardinality, types, value sets)."""

    http_status = 422
    issue_code = "structure"
    exit_code = 2
    default_message = "the resource is not valid FHIR R4"


class ResourceTypeMismatch(BadRequest):
    default_message = "resourceType in the body does not match the URL"


class IdMismatch(BadRequest):
    default_message = "the id in the body does not match the id in the URL"


class UnsupportedSearchParameter(BadRequest):
    issue_code = "not-supported"
    default_message = "unsupported search parameter"


class InvalidSearchParameter(BadRequest):
    issue_code = "value"
    default_message = "invalid search parameter value"


class UnknownResourceType(PhivaultError):
    http_status = 404
    issue_code = "not-supported"
    exit_code = 2
    default_message = "unknown resource type"


class NotFound(PhivaultError):
    http_status = 404
    issue_code = "not-found"
    exit_code = 3
    default_message = "resource not found"


class Hidden(NotFound):
    """An access the policy refuses at instance level (no care relationship, outside the
    launch patient, a Consent): answered exactly like a resource that does not exist
    (same status, code and message), so the refusal never confirms that a record exists.
    Audited where it is raised (service/authorize.py, service/access_guard.py)."""


class Gone(PhivaultError):
    http_status = 410
    issue_code = "deleted"
    exit_code = 3
    default_message = "resource deleted"


class MethodNotAllowed(PhivaultError):
    http_status = 405
    issue_code = "not-supported"
    exit_code = 2
    default_message = "method not allowed"


class NotAcceptable(PhivaultError):
    http_status = 406
    issue_code = "not-supported"
    exit_code = 2
    default_message = "only application/fhir+json is supported"


class UnsupportedMediaType(PhivaultError):
    http_status = 415
    issue_code = "not-supported"
    exit_code = 2
    default_message = "unsupported media type: send application/fhir+json (XML is not supported)"


class PayloadTooLarge(PhivaultError):
    http_status = 413
    issue_code = "too-costly"
    exit_code = 2
    default_message = "request body exceeds the configured limit"


class UriTooLong(PhivaultError):
    http_status = 414
    issue_code = "too-costly"
    exit_code = 2
    default_message = "the request URL exceeds the configured limit"


class HeadersTooLarge(PhivaultError):
    http_status = 431
    issue_code = "too-costly"
    exit_code = 2
    default_message = "the request headers exceed the configured limit"


class RequestTimeout(PhivaultError):
    """A client too slow to send its request (headers or body): the connection is closed."""

    http_status = 408
    issue_code = "timeout"
    exit_code = 2
    default_message = "the request was not received in time"


class ServerBusy(PhivaultError):
    """More connections or requests at once than the server is configured to take."""

    http_status = 503
    issue_code = "transient"
    exit_code = 75
    default_message = "the server is at its connection limit; retry later"


class Conflict(PhivaultError):
    http_status = 409
    issue_code = "conflict"
    exit_code = 4
    default_message = "conflict"


class VersionConflict(PhivaultError):
    """If-Match named a version that is no longer current."""

    http_status = 412
    issue_code = "conflict"
    exit_code = 4
    default_message = "version conflict: the resource has changed (If-Match)"


class PreconditionFailed(PhivaultError):
    http_status = 412
    issue_code = "duplicate"
    exit_code = 4
    default_message = "precondition failed: the condition matched more than one resource"


# --- authentication / authorization ---------------------------------------------------------


class Unauthorized(PhivaultError):
    http_status = 401
    issue_code = "login"
    exit_code = 5
    default_message = "authentication required"


class Forbidden(PhivaultError):
    http_status = 403
    issue_code = "forbidden"
    exit_code = 5
    default_message = "access denied"


# --- configuration, keys, storage -----------------------------------------------------------


class ConfigError(PhivaultError):
    http_status = 500
    issue_code = "exception"
    exit_code = 78  # EX_CONFIG
    default_message = "configuration error"


class KeyMaterialError(PhivaultError):
    """Key material missing or wrong (wrong passphrase, wrong key file)."""

    http_status = 500
    issue_code = "security"
    exit_code = 77  # EX_NOPERM
    default_message = "the key does not open this data directory"


class DecryptionError(PhivaultError):
    """Any failed decrypt or signature check. Deliberately says nothing about which step."""

    http_status = 500
    issue_code = "security"
    exit_code = 65  # EX_DATAERR
    default_message = "stored data failed its integrity check"


class StoreError(PhivaultError):
    http_status = 503
    issue_code = "transient"
    exit_code = 75  # EX_TEMPFAIL
    default_message = "the data store is unavailable"


class StorageFull(StoreError):
    http_status = 507
    issue_code = "transient"
    default_message = "the data store is out of space; writes are refused, reads continue"


class AuditUnavailable(PhivaultError):
    """The audit entry could not be made durable: the access must not happen (fail closed)."""

    http_status = 503
    issue_code = "transient"
    exit_code = 75
    default_message = "the audit log is unavailable; the request was refused"


class IntegrityError(PhivaultError):
    """Stored data or the audit log does not verify."""

    http_status = 500
    issue_code = "exception"
    exit_code = 65
    default_message = "integrity check failed"


class ProofError(IntegrityError):
    """A Merkle inclusion or consistency proof, or its inputs, does not verify."""

    default_message = "the Merkle proof does not verify"


class TreeRangeError(BadRequest):
    """A proof or root was asked for a tree size or leaf index that does not exist."""

    issue_code = "value"
    default_message = "tree size or leaf index out of range"


class KeyShredded(Gone):
    """The data key of a compartment was destroyed on purpose (crypto-shredding)."""

    default_message = "the data of this patient was destroyed (crypto-shredded)"


# --- PATCH, bundles and bulk export ------------------------------------------------------


class InvalidPatch(BadRequest):
    """The JSON Patch document itself is malformed (not a list of RFC 6902 operations)."""

    default_message = "the JSON Patch document is not valid (RFC 6902)"


class PatchConflict(Conflict):
    """A patch that does not apply to the resource as it is now (RFC 5789 "conflicting
    state"): a `test` operation failed or a path it assumes does not exist."""

    default_message = "the patch does not apply to the current version of the resource"


class PatchRefused(InvalidResource):
    """A patch whose result may not be stored (it changes the id or the resource type)."""

    issue_code = "processing"
    default_message = "a patch must not change the id or the resourceType of a resource"


class UnresolvedReference(PreconditionFailed):
    """A conditional reference (Type?query) in a Bundle that matched no resource."""

    issue_code = "not-found"
    default_message = "a conditional reference matched no resource"


class TooManyExports(PhivaultError):
    http_status = 429
    issue_code = "throttled"
    exit_code = 75
    default_message = "too many bulk exports are in progress; retry later"


class ExportFailed(PhivaultError):
    """A bulk export job that ended in error (or whose worker stopped)."""

    http_status = 500
    issue_code = "exception"
    exit_code = 1
    default_message = "the bulk export failed"


# --- audit: checkpoints, verification, witnesses --------------------------------------------


class CheckpointError(IntegrityError):
    """A signed checkpoint is malformed or its signature does not verify (never says which)."""

    default_message = "the audit checkpoint does not verify"


class AuditVerifyFailed(IntegrityError):
    """`audit verify` found entries, nodes, checkpoints or data rows that do not verify."""

    default_message = "the audit log does not verify"


class WitnessAlarm(IntegrityError):
    """A checkpoint is not a consistent extension of one a witness saw before: rollback,
    fork or rewritten history."""

    default_message = "the audit log is not a consistent extension of the witnessed one"


# --- identity and access control -----------------------------------------------------------


class InvalidToken(Unauthorized):
    """Any bearer token that does not verify: missing, expired, wrong audience or issuer,
    unknown algorithm, bad signature, revoked session. Deliberately says nothing about
    which check failed."""

    default_message = "the access token is missing or not valid"


class LoginFailed(Unauthorized):
    """Wrong username, password or one-time code (never says which)."""

    default_message = "the username, password or one-time code is not correct"


class TooManyAttempts(PhivaultError):
    """Authentication throttled (backoff after failures, or a rate limit)."""

    http_status = 429
    issue_code = "throttled"
    exit_code = 75
    default_message = "too many attempts; retry later"


class WeakPassword(BadRequest):
    issue_code = "business-rule"
    default_message = "the password is too short or too common (at least 12 characters)"


class UserExists(Conflict):
    default_message = "a user with this username already exists"


class UnknownUser(NotFound):
    default_message = "no such user"


class BreakGlassRefused(Forbidden):
    """Emergency access asked for without a reason, or by a role that may not claim it."""

    default_message = "break-glass access needs a clinical role and a reason"


class OAuthError(BadRequest):
    """An OAuth 2.0 error (RFC 6749 section 5.2); the token endpoint answers it as JSON
    `{"error": oauth_error}` rather than as an OperationOutcome."""

    oauth_error: ClassVar[str] = "invalid_request"
    default_message = "the OAuth request is not valid"


class InvalidGrant(OAuthError):
    oauth_error = "invalid_grant"
    default_message = "the authorization grant or refresh token is not valid"


class InvalidClient(OAuthError):
    http_status = 401
    issue_code = "login"
    oauth_error = "invalid_client"
    default_message = "client authentication failed"


class InvalidScope(OAuthError):
    oauth_error = "invalid_scope"
    default_message = "the requested scope is not valid or exceeds what was granted"


class UnsupportedGrantType(OAuthError):
    oauth_error = "unsupported_grant_type"
    default_message = "unsupported grant type"


# --- backups ----------------------------------------------------------------------------------


class BackupError(PhivaultError):
    """A backup could not be written, listed or read (repository unreachable, damaged)."""

    http_status = 500
    issue_code = "exception"
    exit_code = 74  # EX_IOERR
    default_message = "the backup repository cannot be used"


class AppendOnlyViolation(BackupError):
    """Something tried to overwrite or delete a repository object with the server's access."""

    exit_code = 77
    default_message = "the backup repository is append-only: nothing is overwritten or deleted"


class BackupIntegrityError(IntegrityError):
    """A snapshot manifest or a chunk is missing, altered, swapped or unsigned (never says
    which check failed on a sealed object)."""

    default_message = "the backup does not verify"


class BackupKeyError(KeyMaterialError):
    default_message = "the backup key does not belong to this repository"


class PruneRefused(Forbidden):
    """`backup prune` run with the server's repository access instead of the operator's."""

    exit_code = 77
    default_message = (
        "prune needs the operator's credentials and backup key; the server's access can only add"
    )


class SnapshotNotFound(NotFound):
    default_message = "no such backup snapshot"


class DataDirDamaged(IntegrityError):
    """The data directory failed the start-up integrity check; serving it is refused."""

    default_message = (
        "the data directory failed its integrity check; restore it from a backup with "
        "`phivault backup restore --to DIR` (see `phivault backup list`)"
    )


# --- benchmarks -------------------------------------------------------------------------------


class BenchmarkFailed(PhivaultError):
    """`phivault bench`: a server under test did not start, died, or answered wrongly."""

    default_message = "the benchmark failed"


# --- threat detection ------------------------------------------------------------------------


class AlertNotFound(NotFound):
    default_message = "no such alert"


class AlertStateError(Conflict):
    """A review step that does not follow from the alert's state (e.g. acknowledging a
    resolved alert)."""

    default_message = "the alert is not in a state that allows this step"


class DetectorBusy(Conflict):
    default_message = (
        "a running server is scanning this data directory (its alerts are current: "
        "`phivault alerts list`); try again after it stops"
    )
