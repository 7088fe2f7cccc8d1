"""Clinical terminology for the synthetic clinic: LOINC, SNOMED CT, ICD-10-CM, RxNorm, UCUM.

Codes are real and common in primary care (most appear in Synthea's output too), so
search, de-identification and detectors see the codes they will meet in production.
Every table is a tuple, so a record's choice is an index and stays stable for a seed.
"""

from __future__ import annotations

from typing import NamedTuple

# --- observations ------------------------------------------------------------------------


class Vital(NamedTuple):
    key: str
    loinc: str
    display: str
    unit: str
    ucum: str


VITALS: tuple[Vital, ...] = (
    Vital("bp", "85354-9", "Blood pressure panel with all children optional", "mm[Hg]", "mm[Hg]"),
    Vital("hr", "8867-4", "Heart rate", "beats/minute", "/min"),
    Vital("weight", "29463-7", "Body weight", "kg", "kg"),
    Vital("temp", "8310-5", "Body temperature", "Cel", "Cel"),
    Vital("spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%"),
    Vital("rr", "9279-1", "Respiratory rate", "breaths/minute", "/min"),
    Vital("height", "8302-2", "Body height", "cm", "cm"),
    Vital("bmi", "39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "kg/m2"),
)
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")


class Lab(NamedTuple):
    key: str
    loinc: str
    display: str
    ucum: str
    low: float | None
    high: float | None
    mean: float
    sd: float
    decimals: int


LABS: tuple[Lab, ...] = (
    Lab("hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, 5.3, 0.35, 1),
    Lab("glucose", "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, 91, 9, 0),
    Lab(
        "chol",
        "2093-3",
        "Cholesterol [Mass/volume] in Serum or Plasma",
        "mg/dL",
        None,
        200,
        182,
        28,
        0,
    ),
    Lab(
        "hdl",
        "2085-9",
        "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
        "mg/dL",
        40,
        None,
        54,
        12,
        0,
    ),
    Lab(
        "ldl",
        "13457-7",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
        "mg/dL",
        None,
        100,
        104,
        26,
        0,
    ),
    Lab(
        "trig",
        "2571-8",
        "Triglyceride [Mass/volume] in Serum or Plasma",
        "mg/dL",
        None,
        150,
        120,
        40,
        0,
    ),
    Lab(
        "creat",
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "mg/dL",
        0.6,
        1.3,
        0.92,
        0.16,
        2,
    ),
    Lab(
        "egfr",
        "33914-3",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or"
        " Plasma by Creatinine-based formula (MDRD)",
        "mL/min/{1.73_m2}",
        60,
        None,
        92,
        14,
        0,
    ),
    Lab("hgb", "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 17.5, 14.1, 1.2, 1),
    Lab(
        "wbc",
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "10*3/uL",
        4.5,
        11.0,
        7.0,
        1.7,
        1,
    ),
    Lab(
        "plt",
        "777-3",
        "Platelets [#/volume] in Blood by Automated count",
        "10*3/uL",
        150,
        400,
        250,
        50,
        0,
    ),
    Lab(
        "na", "2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135, 145, 140, 2.2, 0
    ),
    Lab(
        "k",
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        3.5,
        5.1,
        4.2,
        0.3,
        1,
    ),
    Lab(
        "tsh",
        "3016-3",
        "Thyrotropin [Units/volume] in Serum or Plasma",
        "m[IU]/L",
        0.4,
        4.0,
        1.8,
        0.8,
        2,
    ),
    Lab(
        "alt",
        "1742-6",
        "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        7,
        56,
        24,
        9,
        0,
    ),
)
LAB_INDEX = {lab.key: position for position, lab in enumerate(LABS)}

INTERPRETATIONS = {"L": "Low", "N": "Normal", "H": "High"}

# --- conditions and medications ----------------------------------------------------------


class Condition(NamedTuple):
    key: str
    snomed: str
    display: str
    icd10: str
    icd10_display: str
    chronic: bool
    weights: tuple[float, float, float, float]
    """Relative frequency for ages 0-17, 18-44, 45-64 and 65+."""
    medications: tuple[str, ...]
    labs: tuple[tuple[str, float], ...] = ()
    """Labs this condition is followed with, and how it shifts their mean."""


CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "hypertension",
        "59621000",
        "Essential hypertension (disorder)",
        "I10",
        "Essential (primary) hypertension",
        True,
        (0.1, 4, 14, 20),
        ("lisinopril", "amlodipine", "hctz"),
        (("na", 0), ("k", 0), ("creat", 0.05)),
    ),
    Condition(
        "diabetes",
        "44054006",
        "Diabetes mellitus type 2 (disorder)",
        "E11.9",
        "Type 2 diabetes mellitus without complications",
        True,
        (0.2, 2, 7, 9),
        ("metformin", "metformin", "insulin"),
        (("hba1c", 2.3), ("glucose", 60)),
    ),
    Condition(
        "hyperlipidemia",
        "55822004",
        "Hyperlipidemia (disorder)",
        "E78.5",
        "Hyperlipidemia, unspecified",
        True,
        (0.1, 3, 10, 12),
        ("simvastatin", "atorvastatin"),
        (("chol", 50), ("ldl", 45), ("trig", 60), ("hdl", -6)),
    ),
    Condition(
        "asthma",
        "195967001",
        "Asthma (disorder)",
        "J45.909",
        "Unspecified asthma, uncomplicated",
        True,
        (8, 4, 3, 2),
        ("albuterol", "fluticasone"),
    ),
    Condition(
        "copd",
        "13645005",
        "Chronic obstructive lung disease (disorder)",
        "J44.9",
        "Chronic obstructive pulmonary disease, unspecified",
        True,
        (0, 0.3, 2, 5),
        ("albuterol", "fluticasone"),
    ),
    Condition(
        "depression",
        "35489007",
        "Depressive disorder (disorder)",
        "F32.A",
        "Depression, unspecified",
        True,
        (1, 6, 5, 4),
        ("fluoxetine",),
    ),
    Condition(
        "anxiety",
        "197480006",
        "Anxiety disorder (disorder)",
        "F41.9",
        "Anxiety disorder, unspecified",
        True,
        (2, 7, 5, 3),
        ("fluoxetine",),
    ),
    Condition(
        "hypothyroidism",
        "40930008",
        "Hypothyroidism (disorder)",
        "E03.9",
        "Hypothyroidism, unspecified",
        True,
        (0.3, 2, 4, 5),
        ("levothyroxine",),
        (("tsh", 3.5),),
    ),
    Condition(
        "osteoarthritis",
        "396275006",
        "Osteoarthritis (disorder)",
        "M19.90",
        "Unspecified osteoarthritis, unspecified site",
        True,
        (0, 0.5, 6, 12),
        ("acetaminophen", "naproxen"),
    ),
    Condition(
        "cad",
        "53741008",
        "Coronary arteriosclerosis (disorder)",
        "I25.10",
        "Atherosclerotic heart disease of native coronary artery without angina pectoris",
        True,
        (0, 0.1, 2, 6),
        ("clopidogrel", "nitroglycerin"),
        (("chol", 20), ("ldl", 20)),
    ),
    Condition(
        "afib",
        "49436004",
        "Atrial fibrillation (disorder)",
        "I48.91",
        "Unspecified atrial fibrillation",
        True,
        (0, 0.1, 1, 5),
        ("warfarin", "digoxin"),
    ),
    Condition(
        "ckd",
        "709044004",
        "Chronic kidney disease (disorder)",
        "N18.9",
        "Chronic kidney disease, unspecified",
        True,
        (0, 0.3, 2, 6),
        (),
        (("creat", 0.9), ("egfr", -38), ("k", 0.3)),
    ),
    Condition(
        "obesity",
        "414916001",
        "Obesity (disorder)",
        "E66.9",
        "Obesity, unspecified",
        True,
        (3, 6, 7, 4),
        (),
    ),
    Condition(
        "gerd",
        "235595009",
        "Gastroesophageal reflux disease (disorder)",
        "K21.9",
        "Gastro-esophageal reflux disease without esophagitis",
        True,
        (1, 4, 5, 5),
        (),
    ),
    Condition(
        "migraine",
        "37796009",
        "Migraine (disorder)",
        "G43.909",
        "Migraine, unspecified, not intractable, without status migrainosus",
        True,
        (1, 4, 2, 0.5),
        ("ibuprofen", "naproxen"),
    ),
    Condition(
        "allergic_rhinitis",
        "61582004",
        "Allergic rhinitis (disorder)",
        "J30.9",
        "Allergic rhinitis, unspecified",
        True,
        (6, 5, 3, 2),
        ("loratadine",),
    ),
    Condition(
        "atopic_dermatitis",
        "24079001",
        "Atopic dermatitis (disorder)",
        "L20.9",
        "Atopic dermatitis, unspecified",
        True,
        (5, 1, 0.5, 0.3),
        (),
    ),
    Condition(
        "anemia",
        "271737000",
        "Anemia (disorder)",
        "D64.9",
        "Anemia, unspecified",
        True,
        (1, 2, 2, 3),
        (),
        (("hgb", -2.6),),
    ),
    Condition(
        "back_pain",
        "279039007",
        "Low back pain (finding)",
        "M54.50",
        "Low back pain, unspecified",
        False,
        (0.5, 5, 5, 4),
        ("ibuprofen", "acetaminophen"),
    ),
    Condition(
        "viral_sinusitis",
        "444814009",
        "Viral sinusitis (disorder)",
        "J01.90",
        "Acute sinusitis, unspecified",
        False,
        (8, 7, 5, 3),
        ("acetaminophen",),
    ),
    Condition(
        "pharyngitis",
        "195662009",
        "Acute viral pharyngitis (disorder)",
        "J02.9",
        "Acute pharyngitis, unspecified",
        False,
        (8, 5, 3, 2),
        ("acetaminophen",),
    ),
    Condition(
        "strep",
        "43878008",
        "Streptococcal sore throat (disorder)",
        "J02.0",
        "Streptococcal pharyngitis",
        False,
        (5, 2, 1, 0.5),
        ("amoxicillin", "penicillin"),
    ),
    Condition(
        "bronchitis",
        "10509002",
        "Acute bronchitis (disorder)",
        "J20.9",
        "Acute bronchitis, unspecified",
        False,
        (5, 4, 4, 4),
        ("acetaminophen",),
    ),
    Condition(
        "otitis_media",
        "65363002",
        "Otitis media (disorder)",
        "H66.90",
        "Otitis media, unspecified, unspecified ear",
        False,
        (10, 1, 0.5, 0.3),
        ("amoxicillin",),
    ),
    Condition(
        "uti",
        "68566005",
        "Urinary tract infectious disease (disorder)",
        "N39.0",
        "Urinary tract infection, site not specified",
        False,
        (2, 4, 3, 5),
        ("amox_clav",),
        (("wbc", 2.5),),
    ),
    Condition(
        "ankle_sprain",
        "44465007",
        "Sprain of ankle (disorder)",
        "S93.409A",
        "Sprain of unspecified ligament of unspecified ankle, initial encounter",
        False,
        (4, 4, 2, 1),
        ("ibuprofen", "naproxen"),
    ),
    Condition(
        "pneumonia",
        "233604007",
        "Pneumonia (disorder)",
        "J18.9",
        "Pneumonia, unspecified organism",
        False,
        (1, 1, 1, 3),
        ("amoxicillin",),
        (("wbc", 4.5),),
    ),
)


class Medication(NamedTuple):
    key: str
    rxnorm: str
    display: str
    instructions: str
    per_day: int
    dose: float
    dose_unit: str
    dose_ucum: str
    as_needed: bool
    days: int | None
    """Course length; None for a long-term medication."""


MEDICATIONS: tuple[Medication, ...] = (
    Medication(
        "lisinopril",
        "314076",
        "lisinopril 10 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "amlodipine",
        "197361",
        "amlodipine 5 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "hctz",
        "310798",
        "hydrochlorothiazide 25 MG Oral Tablet",
        "Take 1 tablet by mouth every morning",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "metformin",
        "860975",
        "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "Take 1 tablet by mouth daily with the evening meal",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "insulin",
        "106892",
        "Humulin 70/30 Injectable Suspension",
        "Inject 10 units under the skin twice daily before meals",
        2,
        10,
        "IU",
        "[IU]",
        False,
        None,
    ),
    Medication(
        "simvastatin",
        "312961",
        "simvastatin 20 MG Oral Tablet",
        "Take 1 tablet by mouth at bedtime",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "atorvastatin",
        "617310",
        "atorvastatin 20 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "albuterol",
        "745679",
        "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
        "Inhale 2 puffs every 4 to 6 hours as needed for wheezing",
        4,
        2,
        "puff",
        "{puff}",
        True,
        None,
    ),
    Medication(
        "fluticasone",
        "895994",
        "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
        "Inhale 2 puffs twice daily",
        2,
        2,
        "puff",
        "{puff}",
        False,
        None,
    ),
    Medication(
        "fluoxetine",
        "310385",
        "fluoxetine 20 MG Oral Capsule",
        "Take 1 capsule by mouth once daily",
        1,
        1,
        "capsule",
        "{capsule}",
        False,
        None,
    ),
    Medication(
        "levothyroxine",
        "966222",
        "levothyroxine sodium 0.075 MG Oral Tablet",
        "Take 1 tablet by mouth every morning on an empty stomach",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "acetaminophen",
        "313782",
        "acetaminophen 325 MG Oral Tablet",
        "Take 2 tablets by mouth every 6 hours as needed for pain",
        4,
        2,
        "tablet",
        "{tbl}",
        True,
        14,
    ),
    Medication(
        "naproxen",
        "849574",
        "naproxen sodium 220 MG Oral Tablet",
        "Take 1 tablet by mouth every 12 hours as needed for pain",
        2,
        1,
        "tablet",
        "{tbl}",
        True,
        14,
    ),
    Medication(
        "ibuprofen",
        "310965",
        "ibuprofen 200 MG Oral Tablet",
        "Take 2 tablets by mouth every 6 hours as needed for pain",
        4,
        2,
        "tablet",
        "{tbl}",
        True,
        10,
    ),
    Medication(
        "clopidogrel",
        "309362",
        "clopidogrel 75 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "nitroglycerin",
        "705129",
        "nitroglycerin 0.4 MG/ACTUAT Mucosal Spray",
        "Spray 1 dose under the tongue as needed for chest pain; may repeat every"
        " 5 minutes, up to 3 doses",
        3,
        1,
        "spray",
        "{spray}",
        True,
        None,
    ),
    Medication(
        "warfarin",
        "855332",
        "warfarin sodium 5 MG Oral Tablet",
        "Take 1 tablet by mouth once daily in the evening",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "digoxin",
        "197604",
        "digoxin 0.125 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "loratadine",
        "665078",
        "loratadine 5 MG Chewable Tablet",
        "Chew 1 tablet once daily",
        1,
        1,
        "tablet",
        "{tbl}",
        False,
        None,
    ),
    Medication(
        "amoxicillin",
        "308182",
        "amoxicillin 250 MG Oral Capsule",
        "Take 2 capsules by mouth every 12 hours for 10 days",
        2,
        2,
        "capsule",
        "{capsule}",
        False,
        10,
    ),
    Medication(
        "penicillin",
        "834061",
        "penicillin V potassium 250 MG Oral Tablet",
        "Take 1 tablet by mouth 4 times daily for 10 days",
        4,
        1,
        "tablet",
        "{tbl}",
        False,
        10,
    ),
    Medication(
        "amox_clav",
        "562251",
        "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet",
        "Take 1 tablet by mouth every 8 hours for 7 days",
        3,
        1,
        "tablet",
        "{tbl}",
        False,
        7,
    ),
)
MEDICATION_INDEX = {medication.key: position for position, medication in enumerate(MEDICATIONS)}

# --- allergies ---------------------------------------------------------------------------


class Allergen(NamedTuple):
    system: str
    code: str
    display: str
    type: str
    category: str
    criticality: str
    weight: float
    reactions: tuple[int, ...]
    """Indexes into REACTIONS."""


REACTIONS: tuple[tuple[str, str], ...] = (
    ("247472004", "Wheal (finding)"),
    ("271807003", "Eruption of skin (disorder)"),
    ("39579001", "Anaphylaxis (disorder)"),
    ("418290006", "Itching of skin (finding)"),
    ("267036007", "Dyspnea (finding)"),
    ("422587007", "Nausea (finding)"),
    ("76067001", "Sneezing (finding)"),
    ("267038008", "Edema (finding)"),
    ("56018004", "Wheezing (finding)"),
    ("62315008", "Diarrhea (finding)"),
)

_RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
_SCT = "http://snomed.info/sct"

ALLERGENS: tuple[Allergen, ...] = (
    Allergen(_RX, "70618", "penicillin", "allergy", "medication", "high", 10, (0, 1, 2)),
    Allergen(_RX, "10180", "sulfamethoxazole", "allergy", "medication", "low", 4, (1, 3)),
    Allergen(_RX, "723", "amoxicillin", "allergy", "medication", "low", 3, (0, 1)),
    Allergen(_RX, "1191", "aspirin", "allergy", "medication", "low", 2, (0, 8)),
    Allergen(_RX, "5640", "ibuprofen", "intolerance", "medication", "low", 2, (5, 1)),
    Allergen(_RX, "2670", "codeine", "intolerance", "medication", "low", 3, (5, 3)),
    Allergen(
        _SCT, "256349002", "Peanut - dietary (substance)", "allergy", "food", "high", 5, (0, 2, 7)
    ),
    Allergen(
        _SCT, "442571000124108", "Tree nut (substance)", "allergy", "food", "high", 2, (0, 2, 7)
    ),
    Allergen(_SCT, "735029006", "Shellfish (substance)", "allergy", "food", "high", 3, (0, 7, 5)),
    Allergen(_SCT, "735971005", "Fish (substance)", "allergy", "food", "low", 1, (0, 5)),
    Allergen(_SCT, "102263004", "Eggs (edible) (substance)", "allergy", "food", "low", 2, (1, 9)),
    Allergen(_SCT, "3718001", "Cow's milk (substance)", "intolerance", "food", "low", 2, (5, 9)),
    Allergen(_SCT, "111088007", "Latex (substance)", "allergy", "environment", "low", 2, (1, 3)),
    Allergen(
        _SCT, "256277009", "Grass pollen (substance)", "allergy", "environment", "low", 6, (6, 3)
    ),
    Allergen(
        _SCT, "264287008", "Animal dander (substance)", "allergy", "environment", "low", 4, (6, 8)
    ),
    Allergen(
        _SCT, "260147004", "House dust mite (substance)", "allergy", "environment", "low", 4, (6, 4)
    ),
    Allergen(
        _SCT, "288328004", "Bee venom (substance)", "allergy", "environment", "high", 2, (7, 2, 0)
    ),
)
ALLERGEN_WEIGHTS: tuple[float, ...] = tuple(allergen.weight for allergen in ALLERGENS)

# --- encounters and appointments ---------------------------------------------------------

CHECK_UP = ("185349003", "Encounter for check up (procedure)")
WELL_CHILD = ("410620009", "Well child visit (procedure)")
FOLLOW_UP = ("390906007", "Follow-up encounter (procedure)")
FOR_PROBLEM = ("185347001", "Encounter for problem (procedure)")
FOR_SYMPTOM = ("185345009", "Encounter for symptom (procedure)")
TELEMEDICINE = ("448337001", "Telemedicine consultation with patient (procedure)")

APPOINTMENT_KINDS: tuple[tuple[str, str, str, int], ...] = (
    # (v2-0276 code, display, description, minutes)
    ("CHECKUP", "A routine check-up, such as an annual physical", "Annual physical", 40),
    ("FOLLOWUP", "A follow up visit from a previous appointment", "Follow-up visit", 20),
    ("FOLLOWUP", "A follow up visit from a previous appointment", "Medication review", 20),
    ("ROUTINE", "Routine appointment - default if not valued", "Blood pressure check", 15),
    ("ROUTINE", "Routine appointment - default if not valued", "Lab results review", 15),
    ("WALKIN", "A previously unscheduled walk-in visit", "Sick visit", 20),
)

MARITAL_STATUS = {
    "S": "Never Married",
    "M": "Married",
    "D": "Divorced",
    "W": "Widowed",
    "L": "Legally Separated",
    "T": "Domestic partner",
}
MARITAL_BY_AGE: tuple[tuple[int, tuple[str, ...], tuple[float, ...]], ...] = (
    # (up to age, codes, cumulative weights)
    (17, ("S",), (1.0,)),
    (29, ("S", "M", "T", "D"), (0.68, 0.93, 0.97, 1.0)),
    (49, ("M", "S", "D", "T", "L"), (0.56, 0.80, 0.94, 0.98, 1.0)),
    (64, ("M", "D", "S", "W", "L", "T"), (0.60, 0.78, 0.90, 0.96, 0.98, 1.0)),
    (200, ("M", "W", "D", "S"), (0.50, 0.78, 0.92, 1.0)),
)
