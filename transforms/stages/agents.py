"""User agents: ``ua`` parsed into an ``agent`` record (browser, OS, device, bot flag).

Parsed with ua-parser and its bundled rule set (ua-parser-builtins; nothing is downloaded), once per
distinct user agent: a batch holds far fewer distinct agents than rows.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pyarrow as pa

from transforms.core.distinct import map_distinct

# crawlers, link previews, synthetic monitoring and headless browsers; HTTP libraries are not bots here:
# server-to-server senders legitimately send events with a python-requests or okhttp user agent
_BOT_WORDS = re.compile(r"bot\b|bot/|crawl|spider|slurp|headless|lighthouse|pingdom|gtmetrix|uptimerobot|"
                        r"facebookexternalhit|preview", re.IGNORECASE)


def _version(part) -> str | None:
    if part is None or part.major is None:
        return None
    return ".".join(v for v in (part.major, part.minor, part.patch) if v is not None)


@lru_cache(maxsize=16_384)
def parse_agent(ua: str) -> dict:
    """The agent record of one user agent string; never raises."""
    from ua_parser import parse

    try:
        result = parse(ua)
    except Exception:  # a rule set bug must not cost the event: the agent is just unknown
        result = None
    browser = result.user_agent if result else None
    os = result.os if result else None
    device = result.device if result else None
    is_bot = bool((device is not None and device.family == "Spider") or _BOT_WORDS.search(ua))
    return {
        "browser": browser.family if browser else None,
        "browser_version": _version(browser),
        "os": os.family if os else None,
        "os_version": _version(os),
        "device": device.family if device else None,
        "is_bot": is_bot,
    }


def agents_column(uas: pa.Array | pa.ChunkedArray, kind: pa.DataType) -> pa.Array:
    """The agent records of a ``ua`` column (null where ``ua`` is null), one parse per distinct value."""
    return map_distinct(uas, parse_agent, kind)
