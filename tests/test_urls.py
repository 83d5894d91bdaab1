"""URL normalization: ``normalize_url`` case by case and by property, ``normalize_urls`` on Arrow."""

from __future__ import annotations

from urllib.parse import unquote

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transforms.stages.urls import normalize_url, normalize_urls


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # query and fragment dropped
        ("https://shop.example.com/p/1?utm_source=mail", "https://shop.example.com/p/1"),
        ("https://shop.example.com/p/1#reviews", "https://shop.example.com/p/1"),
        ("https://shop.example.com/p/1#top?not=query", "https://shop.example.com/p/1"),
        ("https://shop.example.com/p/1?", "https://shop.example.com/p/1"),
        # scheme and host lower-cased, path case kept
        ("HTTPS://Shop.Example.COM/Product/SKU-1", "https://shop.example.com/Product/SKU-1"),
        ("Http://WWW.EXAMPLE.com/A/b/C", "http://www.example.com/A/b/C"),
        # default ports dropped, others kept
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com:8080", "http://example.com:8080/"),
        ("wss://example.com:443/socket", "wss://example.com/socket"),
        ("HTTPS://Shop.Example.com:443/p/7?utm_source=mail&email=a%40b.c#top", "https://shop.example.com/p/7"),
        # empty path becomes /
        ("https://example.com", "https://example.com/"),
        ("https://example.com?q=1", "https://example.com/"),
        ("https://Example.com:443", "https://example.com/"),
        # trailing dot of a fully-qualified host dropped, ideographic full stops included
        ("https://example.com./a", "https://example.com/a"),
        ("https://example.com。/a", "https://example.com/a"),
        ("https://bücher。example。/a", "https://xn--bcher-kva.example/a"),
        # internationalized host in IDNA (punycode)
        ("https://Bücher.Example/Seite", "https://xn--bcher-kva.example/Seite"),
        ("https://xn--bcher-kva.example/Seite", "https://xn--bcher-kva.example/Seite"),
        ("http://例え.テスト/", "http://xn--r8jz45g.xn--zckzah/"),
        # IPv6 literals keep their brackets
        ("http://[::1]:80/x", "http://[::1]/x"),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        # user info is kept as sent
        ("http://user@Example.com/", "http://example.com/"),
        ("https://jane:s3cret@Shop.Example.com:8443/a", "https://shop.example.com:8443/a"),
        # app deep links: scheme lower-cased, the rest (host case included) kept
        ("app://catalogue/product/SKU-1", "app://catalogue/product/SKU-1"),
        ("APP://Catalogue/Product/SKU-1?ref=push", "app://Catalogue/Product/SKU-1"),
        ("myapp://Home", "myapp://Home"),
        ("mailto:Someone@Example.com?subject=hi", "mailto:Someone@Example.com"),
        # unknown stays unknown
        ("unknown", "unknown"),
        # surrounding whitespace dropped, also before a dropped query or fragment
        ("  https://example.com/a  ", "https://example.com/a"),
        ("https://example.com/a ?q=1", "https://example.com/a"),
        ("unknown #x", "unknown"),
        # a scheme urlsplit finds only after dropping a control character or tab is not spliced
        ("\x00app://x", "\x00app://x"),
        ("A\tB:x", "A\tB:x"),
        # malformed: kept best-effort (query and fragment still dropped)
        ("http://[::1", "http://[::1"),
        ("http://[::1?x=1", "http://[::1"),
        ("https://host:99999/x", "https://host:99999/x"),
        ("https://host:99999/x?token=abc", "https://host:99999/x"),
        ("https://host:abc/x", "https://host:abc/x"),
        ("://x", "://x"),
        ("", ""),
        ("   ", ""),
        ("\t\n", ""),
        ("/relative/Path?x", "/relative/Path"),
        ("not a url at all", "not a url at all"),
        ("http://", "http://"),
        # an empty host before a `//` path: the path must not become the host
        ("HTTP://@//0", "http:////0"),
        ("http://:80//x", "http:////x"),
        ("?only=query", ""),
        ("#only-fragment", ""),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("unicode_form", "punycode_form"),
    [
        ("https://bücher.example/a", "https://xn--bcher-kva.example/a"),
        ("https://BÜCHER.example/a", "https://XN--BCHER-KVA.example/a"),
        ("http://例え.テスト/", "http://xn--r8jz45g.xn--zckzah/"),
        ("https://münchen.de:443", "https://xn--mnchen-3ya.de"),
    ],
)
def test_idn_unicode_and_punycode_forms_normalize_identically(unicode_form: str, punycode_form: str) -> None:
    normalized = normalize_url(unicode_form)
    assert normalized == normalize_url(punycode_form)
    assert "xn--" in normalized
    assert normalized.isascii()


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://shop.example.com/account?email=jane.doe@example.com", "jane.doe@example.com"),
        ("https://shop.example.com/account?email=jane.doe%40example.com", "jane.doe%40example.com"),
        ("https://shop.example.com/reset#token=eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("https://shop.example.com/login?next=/a&access_token=s3cr3t-t0k3n#x", "s3cr3t-t0k3n"),
        ("app://catalogue/product/SKU-1?session=abcdef123456", "abcdef123456"),
        ("unknown?email=jane@example.com", "jane@example.com"),
        ("http://[::1?email=jane@example.com", "jane@example.com"),
        ("https://host:99999/x?token=zzz-secret", "zzz-secret"),
        ("not a url?email=jane@example.com", "jane@example.com"),
    ],
)
def test_query_and_fragment_secrets_never_survive(url: str, secret: str) -> None:
    normalized = normalize_url(url)
    assert secret not in normalized
    assert "?" not in normalized and "#" not in normalized


# Text that looks like URLs often enough to reach every branch (web schemes, app schemes, ports,
# IPv6 brackets, IDN hosts, user info, stray whitespace and control characters).
_PIECES = st.sampled_from([
    "http", "HTTPS", "https", "ws", "ftp", "app", "mailto", "x", "", " ", "\t", "\x00", "\x1f",
    ":", "://", "//", "/", ".", "。", "@", "[", "]", "::1", "?", "#", "&", "=", "%41", ":80", ":443",
    ":8080", ":99999", ":", "Example.COM", "bücher", "xn--bcher-kva", "例え", "ß", "İ", "K",
    "a b", "unknown", "\u3000", "\xa0",
])
URL_LIKE = st.lists(_PIECES, max_size=12).map("".join)
_HOST_LABEL = st.sampled_from(["example", "EXAMPLE", "bücher", "BÜCHER", "xn--bcher-kva", "例え", "straße", "a", ""])
_HOST = st.lists(st.tuples(_HOST_LABEL, st.sampled_from([".", "。", "．", "｡", ""])), max_size=4).map(
    lambda labels: "".join(a + b for a, b in labels))
STRUCTURED = st.builds(
    lambda scheme, user, host, port, path, tail: f"{scheme}{user}{host}{port}{path}{tail}",
    st.sampled_from(["http://", "HTTPS://", "wss://", "ftp://", "app://", "x-y+z:", "http:", "", " http://"]),
    st.sampled_from(["", "user@", "u:p@", "@"]),
    st.one_of(_HOST, st.sampled_from(["[::1]", "[2001:DB8::1]", "[::1", "1.2.3.4"])),
    st.sampled_from(["", ":80", ":443", ":8080", ":0", ":99999", ":x", ":"]),
    st.sampled_from(["", "/", "/A/b", "//x", "/a b ", "/é", "/%2F"]),
    st.sampled_from(["", "?q=1", "#f", " ?email=a@b.c", "?#", " ", "\t"]),
)
ANY_TEXT = st.one_of(st.text(), URL_LIKE, STRUCTURED)


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_never_raises_and_returns_text(url: str) -> None:
    assert isinstance(normalize_url(url), str)


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_idempotent(url: str) -> None:
    once = normalize_url(url)
    assert normalize_url(once) == once


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_no_query_or_fragment_survives(url: str) -> None:
    normalized = normalize_url(url)
    assert "?" not in normalized
    assert "#" not in normalized


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=20),
       st.text(max_size=30))
def test_anything_after_a_question_mark_is_gone(path: str, query: str) -> None:
    assert normalize_url(f"https://example.com/{path}?{query}") == f"https://example.com/{path}"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), ANY_TEXT), max_size=30))
def test_normalize_urls_equals_mapping_normalize_url(urls: list[str | None]) -> None:
    expected = [None if u is None else normalize_url(u) for u in urls]
    result = normalize_urls(pa.array(urls, pa.string()))
    assert result.type == pa.string()
    assert result.to_pylist() == expected


def test_normalize_urls_on_chunked_array_with_repeats_and_nulls() -> None:
    chunked = pa.chunked_array([
        pa.array(["HTTPS://A.example/x?1", None], pa.string()),
        pa.array(["HTTPS://A.example/x?2", "unknown", None, "app://Home/x#y"], pa.string()),
        pa.array([], pa.string()),
    ])
    result = normalize_urls(chunked)
    assert result.to_pylist() == [
        "https://a.example/x", None, "https://a.example/x", "unknown", None, "app://Home/x",
    ]


@pytest.mark.parametrize("values", [[], [None], [None, None]])
def test_normalize_urls_empty_and_all_null(values: list) -> None:
    result = normalize_urls(pa.array(values, pa.string()))
    assert result.type == pa.string()
    assert result.to_pylist() == values


# --- user info never survives, whatever else is wrong with the URL (issue 15) -------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://jane:s3cret@host:abc/x", "https://host:abc/x"),  # non-numeric port
        ("https://jane:s3cret@host:99999/x", "https://host:99999/x"),  # port out of range
        ("http://jane:s3cret@[::1/x", "http://[::1/x"),  # malformed IPv6 literal
        ("http://jane:s3cret@[zz::1]/x", "http://[zz::1]/x"),
        ("//jane:s3cret@host/x", "//host/x"),  # scheme-relative
        ("app://jane:s3cret@catalogue/product/1", "app://catalogue/product/1"),  # not http(s)
        ("APP://jane@Catalogue/x", "app://Catalogue/x"),
        ("https:jane:s3cret@host/x", "https:host/x"),  # special scheme without slashes (WHATWG: authority)
        ("https:\\\\jane:s3cret@host:x/", "https:\\\\host:x/"),
        ("\x00app://jane:s3cret@host/x", "app://host/x"),  # leading control character
        ("ht\ttp://jane:s3cret@host:abc/x", "http://host:abc/x"),  # a tab inside the scheme
        ("https://a@b@host:abc/x", "https://host:abc/x"),  # several @: the last one ends the user info
        ("mailto:Someone@Example.com", "mailto:Someone@Example.com"),  # no authority: not user info
        ("https://host/path@x", "https://host/path@x"),
        # what is left once the user info is gone is a URL like any other: canonical, so normalizing twice
        # changes nothing
        ("http:@//x\t", "http://x/"),
        ("https:jane@//Host.Example:443/p?q", "https://host.example/p"),
        # where the authority starts and ends (WHATWG): after any run of `/` and `\\` for the special schemes
        ("https:Xjane@host/x", "https:host/x"),
        ("https:/jane@host/x", "https:/host/x"),
        # … up to the first `/` (or `\\`, special schemes only): an `@` after it is in the path
        ("https://jane@host:abc/p@q/r", "https://host:abc/p@q/r"),
        ("app://jane@host/p@q/r", "app://host/p@q/r"),
        ("https://host\\p@x:abc/", "https://host\\p@x:abc/"),
        ("app://ja\\ne@host/x", "app://host/x"),
    ],
)
def test_user_info_is_dropped_from_malformed_and_non_web_urls(url: str, expected: str) -> None:
    assert normalize_url(url) == expected
    assert normalize_url(expected) == expected


_SPECIAL = ("http", "https", "ws", "wss", "ftp", "file")


def _authority(url: str) -> str | None:
    """The authority of a URL as a browser finds it (None when it has none); written apart from the
    normalizer's own, from the WHATWG URL standard's rules."""
    text = url.replace("\t", "").replace("\n", "").replace("\r", "").lstrip("".join(map(chr, range(0x21))))
    scheme, colon, rest = text.partition(":")
    valid_scheme = colon and scheme[:1].isascii() and scheme[:1].isalpha() and all(
        c.isascii() and (c.isalnum() or c in "+-.") for c in scheme)
    if valid_scheme and scheme.lower() in _SPECIAL:
        rest = rest.lstrip("/\\")
        return rest.replace("\\", "/").split("/", 1)[0]
    body = rest if valid_scheme else text
    if not body.startswith("//"):
        return None
    return body[2:].split("/", 1)[0]


_USERINFO = st.text(alphabet=st.characters(blacklist_characters="/\\?#@\t\n\r", codec="utf-8"), min_size=1,
                    max_size=12)
WITH_USERINFO = st.builds(
    lambda scheme, user, rest: (f"{scheme}{user}@{rest}", user),
    st.sampled_from(["http://", "HTTPS://", "ws://", "ftp://", "app://", "x-y+z://", "//", "https:", "http:\\\\",
                     " http://", "\x00app://", "file:///"]),
    _USERINFO,
    st.one_of(STRUCTURED, URL_LIKE, st.text(max_size=20)),
)


def _userinfo(url: str) -> str | None:
    """The user info of a URL (what comes before the last `@` of its authority), or None."""
    authority = _authority(url.split("?", 1)[0].split("#", 1)[0])
    return authority.rpartition("@")[0] if authority and "@" in authority else None


@settings(max_examples=500, deadline=None)
@given(st.one_of(WITH_USERINFO.map(lambda pair: pair[0]), ANY_TEXT))
@example("http://R@http://user@")  # user info "R", host "http", path "//user@" (a browser's answer too)
def test_user_info_never_survives(url: str) -> None:
    """For any input, the output holds no `@` before its host part that came from the input's user info."""
    userinfo = _userinfo(url)
    normalized = normalize_url(url)
    authority = _authority(normalized)
    if userinfo is not None and authority is not None:
        assert (userinfo + "@").casefold() not in authority.casefold(), (url, normalized)
    if userinfo:
        # anywhere else in the output, unless the input has it again after its user info (a path such as
        # "//user@" after "http://R@host:" holds "r@" by chance)
        marker = (userinfo + "@").casefold()
        after = unquote(url.casefold().split(marker, 1)[-1]).casefold()
        if marker not in after:
            assert marker not in normalized.casefold(), (url, normalized)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # UTS #46 non-transitional, as browsers map hosts (Python's IDNA 2003 codec gave fass.de)
        ("https://faß.de/", "https://xn--fa-hia.de/"),
        ("https://FASS.DE/", "https://fass.de/"),
        ("https://straße.example/a", "https://xn--strae-oqa.example/a"),
        ("https://ẞ.example/", "https://xn--zca.example/"),
        ("https://🙂.example/", "https://xn--938h.example/"),  # IDNA 2008 refuses emoji; browsers still encode
        ("https://ｅｘａｍｐｌｅ.com/", "https://example.com/"),  # full-width letters mapped
        ("https://ñ_x.example/", "https://xn--_x-yja.example/"),  # no STD3 rules: `_` allowed, as in browsers
        ("http://./x", "http://./x"),  # a host of a single dot is kept, not emptied
        # a code point UTS #46 refuses: the lower-cased Unicode host, without its trailing dot
        ("https://.Éa\u0378./p", "https://.éa\u0378/p"),
    ],
)
def test_hosts_are_mapped_by_uts46(url: str, expected: str) -> None:
    assert normalize_url(url) == expected
