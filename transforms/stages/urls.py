"""URL normalization.

``normalize_url`` is the definition (one value); ``normalize_urls`` applies it to an Arrow column,
calling it once per distinct URL (pages repeat, so a batch holds far fewer distinct URLs than rows).
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

import idna
import pyarrow as pa

from transforms.core.distinct import map_distinct

WEB_SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
"""Schemes whose authority is a host: lower-cased, default port dropped, empty path as `/`."""
SPECIAL_SCHEMES = frozenset(WEB_SCHEMES) | {"file"}
"""WHATWG's special schemes: any run of `/` and `\\` after `scheme:` starts the authority."""
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_TABS_AND_BREAKS = str.maketrans("", "", "\t\n\r")
_C0_OR_SPACE = "".join(map(chr, range(0x21)))


def _strip_query_fragment(url: str) -> str:
    cut = len(url)
    for sep in ("?", "#"):
        pos = url.find(sep)
        if 0 <= pos < cut:
            cut = pos
    return url[:cut]


def _drop_userinfo(text: str) -> str:
    """``text`` without the user info of its authority (everything up to the authority's last `@`),
    found the way a browser finds it: leading controls and spaces skipped, tabs and line breaks
    ignored, the authority after `//` (after any `/` and `\\` for the special schemes) up to the next
    `/` (or `\\`, special schemes). The fallback paths of ``normalize_url`` go through this, so a URL
    that is malformed in any other way still loses its credentials."""
    if "@" not in text:
        return text
    clean = text.translate(_TABS_AND_BREAKS).lstrip(_C0_OR_SPACE)
    match = _SCHEME.match(clean)
    start = match.end() if match else 0
    special = match is not None and clean[: start - 1].lower() in SPECIAL_SCHEMES
    if special:
        while start < len(clean) and clean[start] in "/\\":
            start += 1
    elif clean.startswith("//", start):
        start += 2
    else:
        return text  # no authority (`mailto:a@b`, a path): nothing is user info
    end = len(clean)
    for sep in ("/", "\\") if special else ("/",):
        pos = clean.find(sep, start)
        if 0 <= pos < end:
            end = pos
    at = clean.rfind("@", start, end)
    return text if at < 0 else clean[:start] + clean[at + 1:]


def _without_userinfo(text: str) -> str:
    """``_drop_userinfo``, and when that leaves a URL that reads differently (`http:@//x` gives
    `http://x`), that URL's canonical form: normalizing a normalized URL changes nothing."""
    dropped = _drop_userinfo(text)
    return dropped if dropped == text else normalize_url(dropped)


def _ascii_label(label: str) -> str:
    if label.isascii():
        return label
    try:
        return idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        # a label IDNA 2008 refuses (an emoji, a symbol): browsers still write it in punycode
        return "xn--" + label.encode("punycode").decode("ascii")


def _canonical_host(host: str) -> str:
    """Lower-cased host; an internationalized one mapped by UTS #46 (non-transitional, as browsers
    do: `faß.de` is `xn--fa-hia.de`, not `fass.de`) and written in punycode."""
    if host.isascii():
        return host.lower().rstrip(".") if host != "." else host
    try:
        # the mapping also turns the ideographic full stops (。．｡) into dots: drop a trailing one
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        return ".".join(map(_ascii_label, mapped.split("."))).rstrip(".")
    except (idna.IDNAError, UnicodeError, ValueError):
        return host.lower().rstrip(".")  # best effort: keep the lower-cased Unicode form


def normalize_url(url: str) -> str:
    """Canonical form of one URL; never raises.

    Query, fragment and user info are dropped (they carry tokens, e-mail addresses, passwords), also
    from URLs that are malformed otherwise or not web URLs. For web schemes the scheme and host are
    lower-cased, internationalized hosts are mapped by UTS #46 and written in IDNA (punycode),
    the default port is dropped and an empty path becomes ``/``. Other schemes (app deep links)
    keep everything but a lower-cased scheme and their user info. Anything unparseable is kept with only
    its query, fragment and user info removed. ``unknown`` stays ``unknown``.
    """
    # strip after the cut: the text before a `?` may end in spaces ("x ?q" must give "x", as "x" does)
    stripped = _strip_query_fragment(url).strip()
    try:
        parts = urlsplit(stripped)
        scheme = parts.scheme.lower()
        if scheme not in WEB_SCHEMES or not parts.netloc:
            if not parts.scheme or stripped[: len(parts.scheme)].lower() != scheme:
                # no scheme, or urlsplit found it only after dropping control characters or tabs:
                # splicing its length onto the raw text would corrupt it
                return _without_userinfo(stripped)
            return _without_userinfo(scheme + stripped[len(parts.scheme):])
        host = parts.hostname or ""
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:  # a bad port, a malformed IPv6 literal: kept as sent, but never its credentials
        return _without_userinfo(stripped)
    # user:password@ is dropped with the query: credentials never reach the table
    host = _canonical_host(host)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host
    if port is not None and port != WEB_SCHEMES[scheme]:
        netloc = f"{host}:{port}"
    # not urlunsplit: with an empty netloc it would turn a path starting with `//` into the host
    return f"{scheme}://{netloc}{parts.path or '/'}"


_cached = lru_cache(maxsize=65_536)(normalize_url)


def normalize_urls(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Normalize a string column, computing each distinct value once."""
    return map_distinct(urls, _cached, pa.string())
