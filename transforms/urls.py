"""URL normalization.

``normalize_url`` is the definition (one value); ``normalize_urls`` applies it to an Arrow column,
calling it once per distinct URL (pages repeat, so a batch holds far fewer distinct URLs than rows).
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

WEB_SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
"""Schemes whose authority is a host: lower-cased, default port dropped, empty path as `/`."""


def _strip_query_fragment(url: str) -> str:
    cut = len(url)
    for sep in ("?", "#"):
        pos = url.find(sep)
        if 0 <= pos < cut:
            cut = pos
    return url[:cut]


def _canonical_host(host: str) -> str:
    host = host.lower().rstrip(".") if host not in (".",) else host
    if host.isascii():
        return host
    try:
        # IDNA turns the ideographic full stops (。．｡) into dots: drop a trailing one it made
        return host.encode("idna").decode("ascii").rstrip(".")
    except (UnicodeError, ValueError):
        return host  # best effort: keep the lower-cased Unicode form


def normalize_url(url: str) -> str:
    """Canonical form of one URL; never raises.

    Query, fragment and user info are dropped (they carry tokens, e-mail addresses, passwords). For web schemes
    the scheme and host are lower-cased, internationalized hosts are written in IDNA (punycode),
    the default port is dropped and an empty path becomes ``/``. Other schemes (app deep links)
    keep everything but a lower-cased scheme. Anything unparseable is kept with only its query and
    fragment removed. ``unknown`` stays ``unknown``.
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
                return stripped
            return scheme + stripped[len(parts.scheme):]
        host = parts.hostname or ""
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return stripped
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
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks()
    encoded = pc.dictionary_encode(urls)
    normalized = pa.array([_cached(u) for u in encoded.dictionary.to_pylist()], pa.string())
    return normalized.take(encoded.indices)
