"""What one synthetic event holds, and how a run draws them: the companies, catalogues, devices, URLs,
labels, broken lines and conflicting copies of ``bench/generate_events.py`` (its docstring says what the
lines look like). Every draw comes from one seeded ``random.Random``: the same seed, the same events.
"""

from __future__ import annotations

import bisect
import random
import struct
import time

import orjson

START_MS = 1_785_542_400_000  # 2026-08-01T00:00:00Z
END_MS = 1_795_219_200_000  # 2026-11-21T00:00:00Z, exclusive
ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
LOWER36 = b"0123456789abcdefghijklmnopqrstuvwxyz"
# Random bytes mapped onto an alphabet: the slight bias does not matter for synthetic ids.
T62 = bytes.maketrans(bytes(range(256)), bytes(ALNUM[i % 62] for i in range(256)))
T36 = bytes.maketrans(bytes(range(256)), bytes(LOWER36[i % 36] for i in range(256)))
B36_2 = [chr(LOWER36[i // 36]) + chr(LOWER36[i % 36]) for i in range(1296)]  # base-36 digit pairs
B36_3 = [a + chr(b) for a in B36_2 for b in LOWER36]  # and triples

COMPANIES = [  # key, web hosts, id format, locales, path prefix
    ("61a095fdd8d2e20011544831", ("shop.example.com",), "SKU-{}", ("fr-FR", "en-GB"), "/fr-fr"),
    ("5f3c2b1a9e8d7c6b5a493827", ("www.maison-exemple.fr", "m.maison-exemple.fr"), "{}", ("fr-FR",), ""),
    ("64b7e2c1f0a9d8e7c6b5a401", ("bücher.example",), "BK-{}-DE", ("de-DE", "de-AT"), "/de"),
    ("60d5ecb8a1b2c3d4e5f60718", ("store.acme-outdoor.com",), "AO{}", ("en-US", "es-US", "fr-CA"), "/en-us"),
]
COMPANY_CUM = [0.45, 0.70, 0.85, 1.0]
WORDS = ["sneakers", "cuir", "blanc", "homme", "femme", "veste", "impermeable", "sac", "a", "dos", "roman",
         "poche", "tente", "4", "places", "chaussures", "randonnee", "gore-tex", "pull", "laine", "merinos"]
PAGE_PATHS = ["/c/chaussures/homme/baskets", "/c/outdoor/tentes-et-bivouac", "/blog/summer-sale-2026",
              "/stores/paris-11", "/account/orders", "/help/delivery-and-returns", "/wishlist"]
WEB_PATHS = {"purchase": "/checkout/confirmation", "category_view": "/c/shoes-men", "identify": "/account/login"}
APP_PATHS = {"add_cart": "app://cart", "purchase": "app://checkout/confirmation",
             "category_view": "app://catalogue/category"}
SCREENS = {"product_page": "ProductDetailScreen", "category_view": "CategoryListScreen", "add_cart": "CartScreen",
           "purchase": "OrderConfirmationScreen", "brand_view": "BrandScreen", "identify": "LoginScreen"}
CATALOG_SIZE = 300  # products per company
PRICES_CENTS = (999, 1990, 2999, 4660, 12000, 12990, 1999, 8950, 34900)
CATEGORIES = ["Shoes, Men", "Shoes, Women", "Bags", "Accessories", "Kids, 2-6 years", "Outdoor", "Books",
              "Home & Garden", "Sale"]
BRANDS = ["Nike", "Levi's", "Dolce & Gabbana", "Acme", "Maison Kitsuné", "Patagonia", "Penguin, Inc."]
_WEBKIT, _SAFARI = "AppleWebKit/537.36 (KHTML, like Gecko)", "AppleWebKit/605.1.15 (KHTML, like Gecko)"
UAS = [
    f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/129.0.0.0 Safari/537.36",
    f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_SAFARI} Version/18.0 Safari/605.1.15",
    f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) {_SAFARI} Version/18.0 Mobile/15E148 Safari/604.1",
    f"Mozilla/5.0 (Linux; Android 14; Pixel 8) {_WEBKIT} Chrome/129.0.6668.70 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/129.0.0.0 Safari/537.36 Edg/129.0.0.0",
    f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) {_SAFARI} Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0."
    "47.110;FBBV/612345678;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBLC/fr_FR]",
    f"Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) {_WEBKIT} SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile "
    "Safari/537.36",
]
QUERIES = ["?utm_source=newsletter&utm_medium=email&utm_campaign=rentree_2026&email=jane.doe@example.com",
           "?utm_source=x&email=a@b.c", "?gclid=Cj0KCQjw-5y1BhCgARIsAPNv1gA_Xb3sQ4kR2&utm_source=google",
           "?page=2&sort=price_asc", "?color=blanc&size=42", "?fbclid=IwAR2xZ8qLmN4vB7kT1pHd9sQ"]
SUFFIXES = [""] * 77 + QUERIES * 4 + ["#reviews", "#/checkout/step-2", "#top"]  # 20% queries, 3% fragments
N_SUFFIXES = len(SUFFIXES)
CUSTOM = ["newsletter_signup", "search", "wishlist_add", "video_play", "Add To Favorites", "scroll_75"]
_BUILTIN = ["page_view", "product_page", "category_view", "brand_view", "product_hover", "add_cart",
            "purchase", "purchase_references", "identify", "custom"]
NAMES = {  # platform group -> (names, cumulative shares)
    "web": (_BUILTIN, [w / 100 for w in (55, 70, 77, 79, 83, 88, 89.5, 90, 92, 100)]),
    "app": (_BUILTIN, [w / 100 for w in (45, 65, 73, 75, 77, 84, 86, 87, 90, 100)]),
    "server": (["purchase", "purchase_references", "identify", "custom"], [0.5, 0.6, 0.8, 1.0]),
}
KINDS = {"product_page": 1, "add_cart": 1, "product_hover": 1, "category_view": 2, "brand_view": 2,
         "purchase": 3, "purchase_references": 3, "page_view": 4}
PLATFORMS, PLATFORM_CUM = ["web", "ios", "android", "flutter", "server"], [0.70, 0.80, 0.92, 0.95, 1.0]
MOBILE = ("ios", "android", "flutter")
BROKEN_KINDS = ["truncated_json", "not_json", "not_object", "missing_key", "bad_key", "bad_version",
                "empty_event_id", "string_timestamp", "data_list", "mixed_array"]
BROKEN_CUM = [0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.76, 0.84, 0.92, 1.0]
NOT_JSON = [b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"undefined",
            b"key=61a095fdd8d2e20011544831&name=page_view&v=1", b"{'key': 'oops', 'v': 1}"]
NOT_OBJECT = [b"42", b'"str"', b"null", b"true", b'[1,"page_view"]']
BAD_KEYS = ["demo", "61a095fdd8d2e2001154483", "61a095fdd8d2e2001154483z", 12345, ""]
OLD_SDK_LABELS = ({"quantity": 2}, {"logged": True}, {"rating": 4.5}, {"inStock": False})
_F32 = struct.Struct("f")


class SyntheticRun:
    """State of one run (devices, catalogs, id counter); every draw comes from one seeded rng."""

    def __init__(self, n_lines: int, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.rnd = rnd = rng.random
        self.pick = lambda seq: seq[int(rnd() * len(seq))]  # cheaper than rng.choice
        self.step = (END_MS - START_MS) / max(n_lines, 1)
        self.devices: list[dict] = []
        self.counter = 0
        self.blocks = [rng.randbytes(8).translate(T36).decode() for _ in range(4096)]
        self.sessions = [self.new_device() for _ in range(64)]  # devices active "now"
        # Weighted origins, one draw each: 3% upper-case or capitalized host, 1% ":443", 1% "http://" (half ":80").
        self.origins = [[f"https://{h}" for h in hosts for _ in range(194 // len(hosts))]
                        + [f"https://{hosts[0].upper()}"] * 3 + [f"https://{hosts[0].capitalize()}"] * 3
                        + [f"https://{hosts[-1]}:443"] * 2 + [f"http://{hosts[0]}", f"http://{hosts[0]}:80"]
                        for _, hosts, _, _, _ in COMPANIES]
        self.catalog: list[list[tuple[str, int, str]]] = []  # per company: (id, price in cents, web path)
        for _, _, fmt, _, prefix in COMPANIES:
            skus = [fmt.format(rng.randrange(1000, 999_999)) for _ in range(CATALOG_SIZE)]
            self.catalog.append([(sku, rng.choice(PRICES_CENTS), f"{prefix}{rng.choice(PAGE_PATHS[:2])}/p/"
                                  + "-".join(rng.sample(WORDS, rng.randint(2, 5))) + f"-{sku.lower()}.html")
                                 for sku in skus])

    def alnum(self, n: int) -> str:
        return self.rng.randbytes(n).translate(T62).decode()

    def uuid(self, upper: bool = False) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        u = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
        return u.upper() if upper else u

    def cuid(self, ts_ms: int, fingerprint: str) -> str:
        """'c' + time in base 36 + counter + device fingerprint + random block, like the web tag's cuid."""
        self.counter = n = self.counter + 1
        t, a = divmod(ts_ms, 46656)
        t, b = divmod(t, 46656)
        # Time and counter already make it unique, so the random block comes from a pool (cheaper).
        return (f"c{B36_2[t % 1296]}{B36_3[b]}{B36_3[a]}{B36_2[n // 1296 % 1296]}{B36_2[n % 1296]}{fingerprint}"
                f"{self.blocks[self.rng.getrandbits(12)]}")

    def new_device(self) -> dict:
        rnd, rng = self.rnd, self.rng
        plat = PLATFORMS[bisect.bisect(PLATFORM_CUM, rnd())]
        c = bisect.bisect(COMPANY_CUM, rnd())
        fp = rng.randbytes(4).translate(T36).decode()
        d = {"plat": plat, "c": c, "key": COMPANIES[c][0], "fp": fp, "ua": None, "client": None,
             "names": NAMES["app" if plat in MOBILE else plat], "app": self.pick(("5.12.0", "5.11.2", "4.9.7"))}
        first_seen = START_MS + int(rnd() * (END_MS - START_MS)) - int(rnd() * 3e10)
        r = rnd()
        if plat == "web":
            d["tmp"], d["ua"] = self.cuid(first_seen, fp), rng.choice(UAS)
            if r < 0.3:  # identified: a customer number, an account id or a hashed e-mail
                d["client"] = (str(rng.randrange(10**5, 10**7)) if r < 0.12 else f"cust_{self.alnum(10)}"
                               if r < 0.2 else f"{rng.getrandbits(256):064x}")
        elif plat == "server":
            d["tmp"] = self.cuid(first_seen, fp) if r < 0.7 else self.uuid()
            d["client"] = str(rng.randrange(10**5, 10**7))
            d["ua"] = rng.choice((None, None, rng.choice(UAS), "python-requests/2.32.3"))  # absent, forwarded, own
        elif plat == "ios":
            d["tmp"] = self.uuid(upper=True)
        elif plat == "android" and r < 0.15:
            d["tmp"] = "android_id"  # the SDK bug: many devices share this literal
        else:
            d["tmp"] = self.uuid() if r < 0.6 else self.alnum(25)
        if plat in MOBILE and rnd() < 0.3:
            d["client"] = f"{self.alnum(8).lower()}@mail.example"
        self.devices.append(d)
        return d

    def pick_device(self) -> dict:
        j = int(self.rnd() * 64)
        if self.rnd() < 0.1:  # a session ends; a new or returning device takes its place
            self.sessions[j] = self.pick(self.devices) if self.rnd() < 0.3 else self.new_device()
        return self.sessions[j]

    def event_time(self, i: int, plat: str) -> int:
        """Line order plus up to 30 min of jitter; a few mobile events arrive days late."""
        ts = START_MS + int(i * self.step) + int((self.rnd() - 0.5) * 3.6e6)
        if plat in MOBILE and self.rnd() < 0.01:
            ts -= int(self.rnd() * 2.6e8)
        return START_MS + abs(ts - START_MS) if ts < END_MS else 2 * END_MS - 1 - ts

    def value(self, cents: int, plat: str) -> float | int | str:
        r, v = self.rnd(), cents / 100
        if plat == "android":
            return _F32.unpack(_F32.pack(v))[0] if r < 0.7 else v  # a Kotlin Float widened to double
        if plat == "web" and r < 0.15:
            return f"{v:.2f}"
        return cents // 100 if cents % 100 == 0 else v

    def envelope(self, i: int, dev: dict | None = None, ts: int | None = None) -> dict:
        rnd, rng, pick = self.rnd, self.rng, self.pick
        dev = dev or self.pick_device()
        plat, c = dev["plat"], dev["c"]
        ts = ts or self.event_time(i, plat)
        names, cum = dev["names"]
        name = names[bisect.bisect(cum, rnd())]
        if name == "custom":
            name = pick(CUSTOM)
        catalog = self.catalog[c]
        item = catalog[int(rnd() * CATALOG_SIZE)]
        ids, data, kind = [item[0]], {}, KINDS.get(name, 0)
        if kind == 1:  # product events
            if name == "add_cart" and rnd() < 0.25:
                ids.append(pick(catalog)[0])  # a bundle: several ids in one event
            r = rnd()
            if plat == "android" and len(ids) == 1:
                data["id"] = ids[0]
            elif r < 0.7:
                data["ids"] = ids
            else:
                data["ids"] = ids[0] if len(ids) == 1 else pick(";,|").join(ids)
            if name != "product_hover" and rnd() < 0.4:
                data["value"] = self.value(item[1], plat)
        elif kind == 2:  # category and brand events: the id may hold a comma
            label = pick(CATEGORIES if name == "category_view" else BRANDS)
            data["id" if plat == "android" else "ids"] = label if plat == "android" or rnd() < 0.6 else [label]
        elif kind == 3:  # purchases
            items = [item] + [pick(catalog) for _ in range(int(rnd() ** 3 * 4))]
            data["ids"] = ids = [sku for sku, _, _ in items]
            order = f"ORD-{ts // 1000 % 10**8}-{rng.randrange(100, 1000)}"
            data["transId"] = None if plat == "ios" and rnd() < 0.4 else order
            if name == "purchase":
                data["value"] = self.value(sum(p for _, p, _ in items), plat)
                if rnd() < 0.5:
                    data["currency"] = "EUR" if c < 3 else "USD"
        elif name == "search":
            data["query"] = pick(("red shoes", "tente 4 places", "Harry Potter"))
        if kind == 4 or name == "product_page":
            r = rnd()
            if r < 0.4:
                data["locale"] = pick(COMPANIES[c][3])
            if r > 0.7 and plat == "web":
                data["pageType"] = pick(("home", "listing", "content", "account"))
        if plat in MOBILE and rnd() < 0.6:
            data["screen"], data["appVersion"] = SCREENS.get(name, "Home"), dev["app"]
        last = rnd()  # one draw for three rare, unrelated choices: old-SDK labels, b/id, missing timestamp
        if last < 0.02:
            data.update(pick(OLD_SDK_LABELS))
        ev = {"key": dev["key"], "tmpId": dev["tmp"]}
        ev["eventId"] = (self.cuid(ts, dev["fp"]) if plat == "web" else self.uuid() if plat == "server"
                         else self.alnum(25))
        ev["name"] = name
        ev["url"] = self.url(dev, name, kind, item)
        if dev["ua"]:
            ev["ua"] = dev["ua"]
        ev["data"] = data
        if name == "identify" and dev["client"] is None:
            dev["client"] = str(rng.randrange(10**5, 10**7))
        if dev["client"] is not None:
            ev["clientId"] = dev["client"]
        elif plat in ("android", "flutter"):
            ev["clientId"] = None
        ev["v"] = 1
        if plat == "web" and 0.95 < last < 0.98:
            ev["b"], ev["id"] = self.alnum(45), self.alnum(16)
        if plat == "server":
            ev["timestamp"] = ts // 1000 if ts % 5 < 3 else float(f"{ts // 1000}.{ts % 1000:03d}")
        elif last < 0.975:
            ev["timestamp"] = ts
        return ev

    def url(self, dev: dict, name: str, kind: int, item: tuple[str, int, str]) -> str:
        if dev["plat"] in MOBILE:
            if self.rnd() < 0.1:
                return "unknown"  # mobile SDKs before a URL is set
            return "app://catalogue/product/" + item[0] if name == "product_page" else APP_PATHS.get(name, "app://home")
        c, rnd = dev["c"], self.rnd
        if kind == 1:
            path = item[2]
        elif kind == 4:
            r = rnd()
            path = "" if r < 0.04 else COMPANIES[c][4] + ("/" if r < 0.3 else self.pick(PAGE_PATHS))
        else:
            path = COMPANIES[c][4] + WEB_PATHS.get(name, "/")
        origins = self.origins[c]
        return origins[int(rnd() * len(origins))] + path + SUFFIXES[int(rnd() * N_SUFFIXES)]

    def broken(self, i: int, kind: str) -> bytes:
        if kind == "not_json":
            return self.pick(NOT_JSON)
        if kind == "not_object":
            return self.pick(NOT_OBJECT)
        ev = self.envelope(i)
        if kind == "truncated_json":
            line = orjson.dumps(ev)
            return line[: self.rng.randrange(1, len(line) - 1)]
        if kind == "mixed_array":  # one good envelope and one bad one in the same body
            bad = self.spoil(self.envelope(i), self.pick(BROKEN_KINDS[3:9]))
            return orjson.dumps([ev, bad] if self.rnd() < 0.5 else [bad, ev])
        return orjson.dumps(self.spoil(ev, kind))

    def spoil(self, ev: dict, kind: str) -> dict:
        if kind == "missing_key":
            del ev["key"]
        elif kind == "bad_key":
            ev["key"] = self.pick(BAD_KEYS)
        elif kind == "bad_version":
            ev["v"] = 2
        elif kind == "empty_event_id":
            ev["eventId"] = ""
        elif kind == "string_timestamp":
            ts = ev.get("timestamp") or START_MS
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts // 1000 if ts > 1e11 else ts))
            ev["timestamp"] = str(ts) if self.rnd() < 0.5 else iso
        elif kind == "data_list":
            ev["data"] = list(ev["data"].values()) or ["page"]
        return ev

    def conflict(self, ev: dict) -> dict:
        """The same eventId with other content: another value, URL, timestamp or clientId."""
        ev = dict(ev, data=dict(ev["data"]))
        r, url = self.rnd(), ev.get("url", "")
        if "value" in ev["data"] and r < 0.5:
            ev["data"]["value"] = round(self.rnd() * 200, 2)
        elif r < 0.75 and url.startswith("http"):
            ev["url"] = url.split("#")[0] + ("&" if "?" in url else "?") + "utm_source=retry"
        elif r < 0.9 or "clientId" in ev:
            ev["timestamp"] = (ev.get("timestamp") or START_MS) + 1 + self.rng.randrange(120)
        else:
            ev["clientId"] = str(self.rng.randrange(10**5, 10**7))
        return ev
