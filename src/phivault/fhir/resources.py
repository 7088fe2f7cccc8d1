"""FHIR R4 resource types, ids and the server-maintained parts of a resource."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from phivault.errors import BadRequest, UnknownResourceType

# Every FHIR R4 (4.0.1) resource type. Validation uses the R4B models of fhir.resources;
# the R4 types that R4B removed or renamed are listed apart because they cannot be
# validated and are therefore refused (docs/ARCHITECTURE.md, "Validation").
R4_TYPES: frozenset[str] = frozenset(
    """
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
    AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
    CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
    ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
    Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
    DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference
    EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest EnrollmentResponse
    EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
    FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService
    ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation
    ImplementationGuide InsurancePlan Invoice Library Linkage List Location Measure
    MeasureReport Media Medication MedicationAdministration MedicationDispense
    MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
    MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization
    OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
    PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire
    QuestionnaireResponse RelatedPerson RequestGroup ResearchDefinition
    ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
    RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen
    SpecimenDefinition StructureDefinition StructureMap Subscription Substance
    SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
    SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
    TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
    """.split()
)

# R4 types with no R4B model: they cannot be validated, so phivault does not store them.
NOT_VALIDATABLE: frozenset[str] = frozenset(
    """
    EffectEvidenceSynthesis MedicinalProduct MedicinalProductAuthorization
    MedicinalProductContraindication MedicinalProductIndication MedicinalProductIngredient
    MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged
    MedicinalProductPharmaceutical MedicinalProductUndesirableEffect RiskEvidenceSynthesis
    SubstanceSpecification
    """.split()
)

# Types that are messages about an interaction, not records: never stored.
NOT_STORABLE: frozenset[str] = frozenset({"Parameters", "OperationOutcome"})

STORABLE_TYPES: frozenset[str] = R4_TYPES - NOT_VALIDATABLE - NOT_STORABLE

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_type(rtype: str) -> str:
    if rtype not in STORABLE_TYPES:
        # The name comes from the URL, not from a body; still, keep it out of the message
        # unless it has the shape of a type name.
        shown = rtype if re.fullmatch(r"[A-Za-z]{1,64}", rtype) else "(invalid)"
        raise UnknownResourceType(f"resource type {shown} is not supported")
    return rtype


def small_int(text: str) -> int | None:
    """A version id, count or cursor: ASCII digits that fit a 64-bit column, else None.

    `str.isdigit` alone is not enough: int() refuses "\u00b2" (which isdigit accepts) and
    a 30-digit number overflows the database's integer column (both were 500s).
    """
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def check_id(rid: str) -> str:
    if not _ID.match(rid):
        raise BadRequest("invalid resource id: 1-64 characters of A-Z, a-z, 0-9, '-' and '.'")
    return rid


def now_instant() -> str:
    """A FHIR instant in UTC with millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(value: str) -> datetime:
    """Parse a FHIR dateTime/instant used in _since and similar parameters."""
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 4:
            parsed = datetime(int(text), 1, 1, tzinfo=UTC)
        elif len(text) == 7:
            parsed = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest("invalid date/time value") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def instant_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
