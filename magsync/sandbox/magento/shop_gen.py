"""Deterministic generation of a realistic sandbox shop (no Faker: ``random.Random(seed)``).

Realistic means what trips a sync in production: non-ASCII names, apostrophes, a spread
of countries with and without region lists (including ones whose Emarsys label differs
from the ISO name: NL, KR, CI, US, CZ), customers without dob or addresses, two websites,
subscribers who are guests or customers in every status, and a block of customers sharing
one ``updated_at`` (a mass action in the admin) so watermark ties really happen.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from magsync.sandbox.magento.records import STORE_OF_WEBSITE, TIME_FORMAT, Subscriber
from magsync.sandbox.magento.shop import Shop

# country id, weight, cities, regions as (region_id, code, name); region_id 0 = free text
COUNTRIES: list[tuple[str, int, tuple[str, ...], tuple[tuple[int, str, str], ...]]] = [
    ("US", 24, ("Austin", "Seattle", "Chicago", "New York", "Los Angeles", "Miami"),
     ((57, "TX", "Texas"), (62, "WA", "Washington"), (23, "IL", "Illinois"),
      (43, "NY", "New York"), (12, "CA", "California"), (18, "FL", "Florida"))),
    ("DE", 18, ("Berlin", "München", "Hamburg", "Köln", "Stuttgart", "Düsseldorf"),
     ((82, "BER", "Berlin"), (81, "BAY", "Bayern"), (84, "HAM", "Hamburg"),
      (88, "NRW", "Nordrhein-Westfalen"), (80, "BAW", "Baden-Württemberg"))),
    ("GB", 12, ("London", "Manchester", "Leeds", "Bristol", "Edinburgh"),
     ((0, "Greater London", "Greater London"), (0, "Lancashire", "Lancashire"))),
    ("FR", 8, ("Paris", "Lyon", "Marseille", "Toulouse", "Lille"),
     ((0, "Île-de-France", "Île-de-France"), (0, "Occitanie", "Occitanie"))),
    ("NL", 6, ("Amsterdam", "Rotterdam", "Utrecht", "Den Haag"),
     ((0, "Noord-Holland", "Noord-Holland"), (0, "Zuid-Holland", "Zuid-Holland"))),
    ("AT", 4, ("Wien", "Graz", "Linz", "Salzburg"),
     ((95, "WI", "Wien"), (102, "ST", "Steiermark"), (97, "OO", "Oberösterreich"))),
    ("CH", 4, ("Zürich", "Genève", "Basel", "Bern"),
     ((104, "ZH", "Zürich"), (110, "GE", "Genève"), (105, "BE", "Bern"))),
    ("IT", 3, ("Roma", "Milano", "Torino"), ((0, "Lazio", "Lazio"),)),
    ("ES", 3, ("Madrid", "Barcelona", "Sevilla"), ((161, "M", "Madrid"),)),
    ("PL", 2, ("Warszawa", "Kraków", "Łódź"), ((0, "Mazowieckie", "Mazowieckie"),)),
    ("CZ", 2, ("Praha", "Brno", "Ostrava"), ((0, "Praha", "Praha"),)),
    ("SE", 2, ("Stockholm", "Göteborg", "Malmö"), ((0, "Stockholm", "Stockholm"),)),
    ("DK", 2, ("København", "Aarhus"), ((0, "Hovedstaden", "Hovedstaden"),)),
    ("BE", 2, ("Bruxelles", "Antwerpen", "Gent"), ((0, "Brussels", "Brussels"),)),
    ("CA", 2, ("Toronto", "Montréal", "Vancouver"), ((74, "ON", "Ontario"),)),
    ("AU", 2, ("Sydney", "Melbourne"), ((569, "NSW", "New South Wales"),)),
    ("IE", 1, ("Dublin", "Cork"), ((0, "Dublin", "Dublin"),)),
    ("KR", 1, ("Seoul", "Busan"), ((0, "Seoul", "Seoul"),)),
    ("CI", 1, ("Abidjan", "Yamoussoukro"), ((0, "Abidjan", "Abidjan"),)),
    ("HK", 1, ("Hong Kong",), ((0, "Kowloon", "Kowloon"),)),
]
MALE = ("James", "Lukas", "Jan", "Thomas", "Pierre", "Søren", "Jürgen", "Liam", "Mateo",
        "Noah", "Minho", "Oliver", "Łukasz", "Ahmed", "François", "Sean", "Marco", "Erik")
FEMALE = ("Anna", "Sophie", "Marie", "Emma", "Zoë", "Chloé", "Jana", "Olivia", "Mia",
          "Seo-yeon", "Ingrid", "Fatima", "Lucía", "Siobhán", "Giulia", "Hannah", "Eva", "Lea")
LAST = ("Müller", "Schmidt", "Smith", "Johnson", "O'Brien", "Dubois", "de Vries", "Novák",
        "Kim", "García", "Rossi", "Nielsen", "Kowalski", "Andersson", "Peeters", "Brown",
        "Weiß", "Jansen", "Lefèvre", "Gruber", "Huber", "Martin", "Lee", "Šťastný", "Ødegård")
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.de", "shop.example.co.uk")
STREETS = ("Hauptstraße", "Main Street", "Rue de la Paix", "Kerkstraat", "High Street",
           "Bahnhofstraße", "Oak Avenue", "Via Roma", "Calle Mayor", "Nørregade")
TIERS = ("bronze", "silver", "gold", "platinum")
STATUSES = (1, 3, 2, 4)
STATUS_WEIGHTS = (70, 20, 4, 6)
HISTORY = timedelta(days=3 * 365)
# cumulative weights computed once: random.choices re-adds plain weights on every call
COUNTRY_CUM = list(itertools.accumulate(c[1] for c in COUNTRIES))
STATUS_CUM = list(itertools.accumulate(STATUS_WEIGHTS))
GENDER_CUM = [45, 90, 100]
ADDRESS_COUNT_CUM = [20, 80, 100]


def default_anchor() -> datetime:
    """Start of the current UTC day: 'now' for generated timestamps, stable all day."""
    return datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


@functools.lru_cache(maxsize=4096)
def ascii_slug(text: str) -> str:
    """Lower-case ASCII for email local parts ("Søren O'Brien" -> "sren.obrien")."""
    flat = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in flat.lower() if ch.isalnum() or ch == "-")


def generate_records(n_customers: int, n_subscribers: int, *, seed: int = 0,
                     anchor: datetime | None = None
                     ) -> tuple[list[dict[str, Any]], list[Subscriber]]:
    """Customers (REST-shaped dicts, ids 1..n) and subscriber rows; all timestamps lie
    before ``anchor`` (default: start of today, UTC)."""
    rng = random.Random(seed)
    end = int((anchor or default_anchor()).timestamp())
    start = end - int(HISTORY.total_seconds())
    mass_action = end - rng.randint(3600, 20 * 86400)
    customers: list[dict[str, Any]] = []
    created: dict[int, int] = {}  # id -> created_at epoch, so nothing is parsed back
    next_address = 1
    for cid in range(1, n_customers + 1):
        record, next_address, created[cid] = _make_customer(rng, cid, next_address, start, end)
        if rng.random() < 0.03 and created[cid] <= mass_action:
            record["updated_at"] = _fmt(mass_action)
        customers.append(record)
    return customers, _make_subscribers(rng, customers, created, n_subscribers, start, end)


def _fmt(epoch: int) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(epoch))


def _make_customer(rng: random.Random, cid: int, next_address: int, start: int, end: int
                   ) -> tuple[dict[str, Any], int, int]:
    """One customer record; returns it, the next free address id and its creation epoch."""
    gender = rng.choices((1, 2, 3), cum_weights=GENDER_CUM)[0]
    first = rng.choice(MALE if gender == 1 else FEMALE if gender == 2 else MALE + FEMALE)
    last = rng.choice(LAST)
    website = 1 if rng.random() < 0.85 else 2
    created = rng.randint(start, end - 60)
    # recent edits are more common than old ones: square the uniform draw towards `end`
    updated = end - int((end - created) * rng.random() ** 2)
    record: dict[str, Any] = {
        "id": cid, "group_id": rng.choice((1, 1, 1, 2, 3)),
        "created_at": _fmt(created), "updated_at": _fmt(min(updated, end - 1)),
        "created_in": "Default Store View" if website == 1 else "Second Store View",
        "email": f"{ascii_slug(first)}.{ascii_slug(last)}.{cid}@{rng.choice(DOMAINS)}",
        "firstname": first, "lastname": last, "gender": gender,
        "store_id": STORE_OF_WEBSITE[website], "website_id": website,
        "addresses": [], "disable_auto_group_change": 0, "custom_attributes": [],
    }
    if rng.random() < 0.85:
        year, month, day = rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)
        record["dob"] = f"{year}-{month:02d}-{day:02d}"
    if rng.random() < 0.9:
        record["custom_attributes"].append(
            {"attribute_code": "loyalty_tier", "value": rng.choice(TIERS)})
    n_addr = rng.choices((0, 1, 2), cum_weights=ADDRESS_COUNT_CUM)[0]
    for _ in range(n_addr):
        record["addresses"].append(_make_address(rng, next_address, record))
        next_address += 1
    if record["addresses"]:
        billing = record["addresses"][0]
        shipping = record["addresses"][-1] if rng.random() < 0.5 else billing
        billing["default_billing"] = True
        shipping["default_shipping"] = True
        record["default_billing"] = str(billing["id"])
        record["default_shipping"] = str(shipping["id"])
    return record, next_address, created


def _make_address(rng: random.Random, aid: int, customer: dict[str, Any]) -> dict[str, Any]:
    country, _, cities, regions = rng.choices(COUNTRIES, cum_weights=COUNTRY_CUM)[0]
    region_id, code, name = rng.choice(regions)
    addr: dict[str, Any] = {
        "id": aid, "customer_id": customer["id"],
        "region": {"region_code": code, "region": name, "region_id": region_id},
        "region_id": region_id, "country_id": country,
        "street": [f"{rng.choice(STREETS)} {rng.randint(1, 250)}"],
        "telephone": f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(10000, 9999999)}",
        "postcode": _postcode(rng, country), "city": rng.choice(cities),
        "firstname": customer["firstname"], "lastname": customer["lastname"],
    }
    if rng.random() < 0.2:
        addr["street"].append(f"Apt {rng.randint(1, 40)}")
    if rng.random() < 0.15:
        addr["company"] = f"{customer['lastname']} {rng.choice(('GmbH', 'Ltd', 'BV', 'SARL'))}"
    return addr


def _postcode(rng: random.Random, country: str) -> str:
    if country == "GB":
        return f"SW{rng.randint(1, 20)} {rng.randint(1, 9)}AB"
    if country == "NL":
        return f"{rng.randint(1000, 9999)} AB"
    if country in ("AT", "CH", "BE", "DK", "AU"):
        return str(rng.randint(1000, 9999))
    return f"{rng.randint(10000, 99999)}"


def _make_subscribers(rng: random.Random, customers: list[dict[str, Any]],
                      created: dict[int, int], count: int, start: int, end: int
                      ) -> list[Subscriber]:
    """About 60% linked to distinct customers, the rest guests with their own emails."""
    linked = rng.sample(customers, min(len(customers), int(count * 0.6)))
    rows: list[Subscriber] = []
    for sid, cust in enumerate(linked, start=1):
        since = created[cust["id"]]
        rows.append(Subscriber(sid, cust["email"], cust["website_id"], cust["store_id"],
                               cust["id"], rng.choices(STATUSES, cum_weights=STATUS_CUM)[0],
                               _fmt(rng.randint(since, end - 1))))
    for sid in range(len(linked) + 1, count + 1):
        website = 1 if rng.random() < 0.85 else 2
        first, last = rng.choice(FEMALE + MALE), rng.choice(LAST)
        email = f"{ascii_slug(first)}.{ascii_slug(last)}.g{sid}@{rng.choice(DOMAINS)}"
        rows.append(Subscriber(sid, email, website, STORE_OF_WEBSITE[website], 0,
                               rng.choices(STATUSES, cum_weights=STATUS_CUM)[0],
                               _fmt(rng.randint(start, end - 1))))
    return rows


def generate_shop(customers: int = 1000, subscribers: int = 600, *, seed: int = 0,
                  anchor: datetime | None = None,
                  now: Callable[[], datetime] | None = None) -> Shop:
    """A deterministic shop (same seed and anchor -> same shop); see ``shop_gen``."""
    shop = Shop(now=now)
    cust, subs = generate_records(customers, subscribers, seed=seed, anchor=anchor)
    shop.load(cust, subs)
    return shop
