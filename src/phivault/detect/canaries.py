"""Honeytoken (canary) patients, seeded at `phivault init`.

Each is an ordinary-looking Patient (a plausible name, birth date, address and phone in
the 555 exchange) written through the service like any record, so it is encrypted,
indexed and found by searches like any other. No care team, appointment or workflow
points at it, so nothing legitimate ever opens it; the canary detector raises a critical
alert on any access. Which patients are canaries is kept only as their audit pseudonyms
(`detect_canaries`): someone holding the database but not the key cannot tell them apart.
"""

from __future__ import annotations

import random
import secrets
import time

from phivault.demo.names import GROUPS
from phivault.demo.places import REGIONS
from phivault.demo.staff import phone, street_line
from phivault.detect.sql import DetectSql
from phivault.service import Context
from phivault.types import Resource
from phivault.vault import Vault

CANARY_ACTOR = "system:canary"
DEFAULT_COUNT = 3


def canary_patient(rng: random.Random) -> Resource:
    group = GROUPS[int(rng.random() * len(GROUPS))]
    gender = "female" if rng.random() < 0.5 else "male"
    given = (group.female if gender == "female" else group.male)[
        int(rng.random() * len(group.female if gender == "female" else group.male))
    ]
    family = group.family[int(rng.random() * len(group.family))]
    region = REGIONS[int(rng.random() * len(REGIONS))]
    city = region.cities[int(rng.random() * len(region.cities))]
    year = rng.randrange(1940, 2005)
    return {
        "resourceType": "Patient",
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender,
        "birthDate": f"{year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "telecom": [{"system": "phone", "value": phone(rng, region), "use": "home"}],
        "address": [
            {
                "use": "home",
                "line": [street_line(rng)],
                "city": city.name,
                "state": region.state,
                "postalCode": f"{city.zip3}{rng.randrange(100):02d}",
                "country": "US",
            }
        ],
    }


def seed_canaries(
    vault: Vault, count: int = DEFAULT_COUNT, *, rng: random.Random | None = None
) -> int:
    """Create `count` canary patients and remember their pseudonyms; returns the count."""
    rng = rng or random.Random(secrets.randbits(64))  # noqa: S311 (not a secret: a disguise)
    sql = DetectSql(vault.store)
    ctx = Context(actor=CANARY_ACTOR)
    pseudonyms: list[str] = []
    for _ in range(count):
        created = vault.service.create(ctx, "Patient", canary_patient(rng))
        pseudonyms.append(vault.audit.pseudonymize(f"Patient/{created.version.rid}"))
    with vault.store.write() as tx:
        for pseudonym in pseudonyms:
            sql.add_canary(tx, pseudonym, time.time())
    return len(pseudonyms)
