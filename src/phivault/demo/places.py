"""Places for the synthetic clinic: metro regions, streets and clinic names.

A clinic sits in one region and most of its patients live there; a few moved in from
elsewhere. ZIP codes are a real 3-digit prefix of the city plus two random digits, and
phone numbers use the 555 exchange, so no generated number belongs to anyone.
"""

from __future__ import annotations

from typing import NamedTuple


class City(NamedTuple):
    name: str
    zip3: str


class Region(NamedTuple):
    state: str
    utc_offset: str
    """Standard-time offset; the generator ignores daylight saving time."""
    area_codes: tuple[str, ...]
    cities: tuple[City, ...]


def _cities(text: str) -> tuple[City, ...]:
    pairs = (item.split(":") for item in text.split(","))
    return tuple(City(name.strip(), zip3.strip()) for name, zip3 in pairs)


REGIONS: tuple[Region, ...] = (
    Region(
        "MA",
        "-05:00",
        ("617", "781", "978", "508"),
        _cities(
            "Boston:021, Cambridge:021, Somerville:021, Quincy:021, Newton:024, Brookline:024,"
            " Waltham:024, Lowell:018, Lynn:019, Framingham:017"
        ),
    ),
    Region(
        "OH",
        "-05:00",
        ("614", "380", "740"),
        _cities(
            "Columbus:432, Dublin:430, Westerville:430, Grove City:431, Hilliard:430,"
            " Upper Arlington:432, Reynoldsburg:430, Gahanna:430, Delaware:430"
        ),
    ),
    Region(
        "TX",
        "-06:00",
        ("713", "281", "832", "346"),
        _cities(
            "Houston:770, Pasadena:775, Sugar Land:774, Katy:774, Pearland:775, Baytown:775,"
            " The Woodlands:773, League City:775, Missouri City:774"
        ),
    ),
    Region(
        "CA",
        "-08:00",
        ("916", "279", "530"),
        _cities(
            "Sacramento:958, Elk Grove:957, Roseville:956, Folsom:956, Citrus Heights:956,"
            " Rancho Cordova:956, Davis:956, West Sacramento:956"
        ),
    ),
    Region(
        "GA",
        "-05:00",
        ("404", "470", "678", "770"),
        _cities(
            "Atlanta:303, Decatur:300, Marietta:300, Smyrna:300, Sandy Springs:303, Roswell:300,"
            " Alpharetta:300, Duluth:300, East Point:303"
        ),
    ),
    Region(
        "AZ",
        "-07:00",
        ("602", "480", "623"),
        _cities(
            "Phoenix:850, Mesa:852, Tempe:852, Chandler:852, Glendale:853, Scottsdale:852,"
            " Gilbert:852, Peoria:853"
        ),
    ),
    Region(
        "MN",
        "-06:00",
        ("612", "651", "763", "952"),
        _cities(
            "Minneapolis:554, Saint Paul:551, Bloomington:554, Brooklyn Park:554, Plymouth:554,"
            " Eagan:551, Edina:554, Maple Grove:553"
        ),
    ),
    Region(
        "NC",
        "-05:00",
        ("919", "984"),
        _cities(
            "Raleigh:276, Durham:277, Cary:275, Chapel Hill:275, Apex:275, Wake Forest:275,"
            " Garner:275, Morrisville:275"
        ),
    ),
    Region(
        "WA",
        "-08:00",
        ("206", "425", "253"),
        _cities(
            "Seattle:981, Bellevue:980, Redmond:980, Kirkland:980, Renton:980, Kent:980,"
            " Everett:982, Tacoma:984, Shoreline:981"
        ),
    ),
    Region(
        "IL",
        "-06:00",
        ("312", "773", "872", "847", "630", "708"),
        _cities(
            "Chicago:606, Evanston:602, Oak Park:603, Cicero:608, Skokie:600, Naperville:605,"
            " Aurora:605, Joliet:604, Berwyn:604"
        ),
    ),
    Region(
        "FL",
        "-05:00",
        ("813", "727", "863"),
        _cities(
            "Tampa:336, Saint Petersburg:337, Clearwater:337, Brandon:335, Largo:337,"
            " Riverview:335, Lakeland:338, Plant City:335"
        ),
    ),
    Region(
        "CO",
        "-07:00",
        ("303", "720"),
        _cities(
            "Denver:802, Aurora:800, Lakewood:802, Littleton:801, Arvada:800, Westminster:800,"
            " Thornton:802, Englewood:801"
        ),
    ),
)

STREETS: tuple[str, ...] = tuple(
    """
    Maple Oak Cedar Pine Elm Washington Lincoln Park Main Church Highland Lake Hill River
    Spring Sunset Meadow Willow Birch Chestnut Walnut Cherry Hickory Magnolia Dogwood Sycamore
    Aspen Juniper Laurel Poplar Franklin Jefferson Madison Monroe Jackson Adams Hamilton Grant
    Ridge Valley Forest Orchard Garden Mill Bridge Market Union Center Broad High School
    Prospect Pleasant Summit Harbor Bay Beacon Academy College University Liberty
    Independence Heritage Colonial Meadowbrook Brookside Fairview Greenwood Westwood Lakeview
    Hillcrest Riverside Woodland Glenwood Oakwood Kingston Cambridge Oxford Windsor Canterbury
    Sherwood Hawthorne Briarwood Foxhall Cardinal Bluebird Sparrow Mesa Canyon Sierra Vista
    Alameda Plaza Palmetto Cypress Bayou Prairie Frontier Holly Locust Mulberry Redwood
    Spruce Sequoia Wildflower Clover Sage Tamarack Butternut Cottonwood Dove Heron Kestrel
    Lexington Concord Princeton Amherst Dartmouth Vassar Quincy Revere Hancock Sumner
    Emerson Thoreau Whitman Frost Edison Carver Tubman Douglass Parks Chavez King
""".split()
)

STREET_SUFFIXES: tuple[str, ...] = (
    "St",
    "St",
    "St",
    "Ave",
    "Ave",
    "Rd",
    "Rd",
    "Dr",
    "Dr",
    "Ln",
    "Blvd",
    "Ct",
    "Way",
    "Pl",
    "Ter",
    "Cir",
)

CLINIC_PREFIXES: tuple[str, ...] = (
    "Riverside",
    "Maple Grove",
    "Cedar Ridge",
    "Lakeside",
    "Northgate",
    "Hillcrest",
    "Brookside",
    "Oak Valley",
    "Harborview",
    "Sunrise",
    "Pinecrest",
    "Willow Creek",
    "Meadowbrook",
    "Summit",
    "Greenfield",
    "Fairview",
    "Clearwater",
    "Stonebridge",
    "Bayview",
    "Prairie View",
    "Elmwood",
    "Aspen Grove",
)

CLINIC_KINDS: tuple[str, ...] = (
    "Family Medicine",
    "Primary Care",
    "Community Health Center",
    "Family Health Clinic",
    "Medical Group",
    "Health Partners",
    "Internal Medicine & Pediatrics",
)
