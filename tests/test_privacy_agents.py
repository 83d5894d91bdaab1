"""User-agent parsing, bot dropping, keyed pseudonyms and redacted dead letters."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.launcher import run
from tests.factory import envelope, line, write_ndjson
from transforms.core.records import ImportContext, dead_letter, reason
from transforms.stages.agents import agents_column, parse_agent
from transforms.stages.privacy import MissingKeyError, load_key, pseudonymize, redact

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.1 Mobile/15E148 Safari/604.1")
KEY = b"k" * 32


@pytest.mark.parametrize("ua, browser, os, device, bot", [
    (IPHONE, "Mobile Safari", "iOS", "iPhone", False),
    (GOOGLEBOT, "Googlebot", None, "Spider", True),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
     "HeadlessChrome", "Linux", None, True),
    ("python-requests/2.32.3", "Python Requests", None, None, False),  # a server sender, not a bot
])
def test_user_agents_are_parsed(ua, browser, os, device, bot):
    agent = parse_agent(ua)
    assert (agent["browser"], agent["os"], agent["device"], agent["is_bot"]) == (browser, os, device, bot)


def test_agent_versions_and_nulls_in_a_column():
    kind = pa.struct([("browser", pa.string()), ("browser_version", pa.string()), ("os", pa.string()),
                      ("os_version", pa.string()), ("device", pa.string()), ("is_bot", pa.bool_())])
    column = agents_column(pa.array([IPHONE, None, IPHONE]), kind).to_pylist()
    assert column[1] is None and column[0] == column[2]
    assert (column[0]["browser_version"], column[0]["os_version"]) == ("17.1", "17.1")


@given(st.text(max_size=300))
def test_parse_agent_never_raises(ua):
    agent = parse_agent(ua)
    assert set(agent) == {"browser", "browser_version", "os", "os_version", "device", "is_bot"}


def test_pseudonyms_are_keyed_hmacs_and_keep_nulls():
    values = pa.array(["alice@example.com", None, "alice@example.com", "bob"])
    out = pseudonymize(values, KEY).to_pylist()
    expected = hmac.new(KEY, b"alice@example.com", hashlib.sha256).hexdigest()
    assert out == [expected, None, expected, hmac.new(KEY, b"bob", hashlib.sha256).hexdigest()]
    assert pseudonymize(values, b"o" * 32).to_pylist()[0] != expected


def test_the_key_must_come_from_the_environment_and_be_long_enough(monkeypatch):
    monkeypatch.delenv("TEST_HASH_KEY", raising=False)
    with pytest.raises(MissingKeyError, match="set the environment variable TEST_HASH_KEY"):
        load_key("TEST_HASH_KEY", None)
    monkeypatch.setenv("TEST_HASH_KEY", "short")
    with pytest.raises(MissingKeyError, match="at least 16 bytes"):
        load_key("TEST_HASH_KEY", None)
    monkeypatch.setenv("TEST_HASH_KEY", "x" * 20)
    assert load_key("TEST_HASH_KEY", None) == b"x" * 20


def launch_check(*flags: str):
    """The importer's launch checks (``check_options``) on these flags, as ``python -m pipeline`` runs them."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.options import check_options

    now = 1_764_000_000_000_000  # 2025-11-24, microseconds
    return check_options(PipelineOptions(["--input=gs://b/x/*.ndjson", "--dry_run=true", *flags]), now)


@pytest.mark.parametrize("runner", ["DataflowRunner", "dataflow",
                                    "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner",
                                    "PortableRunner"])
def test_a_key_from_the_environment_is_refused_when_workers_run_elsewhere(monkeypatch, runner):
    # The launcher has the variable; Dataflow's workers do not, and every one of them would fail.
    monkeypatch.setenv("RLVT_HASH_KEY", "a key of at least 16 bytes")
    with pytest.raises(MissingKeyError, match="--hash_key_secret") as refused:
        launch_check("--pseudonymize=clientId", f"--runner={runner}")
    assert "RLVT_HASH_KEY" in str(refused.value) and "a key of at least" not in str(refused.value)


@pytest.mark.parametrize("runner", [None, "DirectRunner", "direct", "FnApiRunner", "BundleBasedDirectRunner"])
def test_a_key_from_the_environment_is_fine_for_local_workers(monkeypatch, runner):
    # local workers are this machine's processes, started from the launcher: they have its environment
    monkeypatch.setenv("RLVT_HASH_KEY", "a key of at least 16 bytes")
    flags = ["--pseudonymize=clientId"] + ([f"--runner={runner}"] if runner else [])
    assert launch_check(*flags).row_policy.pseudonymize == ("clientId",)


def test_no_key_is_needed_on_dataflow_without_pseudonyms(monkeypatch):
    monkeypatch.delenv("RLVT_HASH_KEY", raising=False)
    assert launch_check("--runner=DataflowRunner").row_policy.pseudonymize == ()


def test_redacted_dead_letters_keep_no_payload_or_value():
    ctx = ImportContext("run", 0)
    raw = b'{"clientId":"jane@example.com","key":"bad"}'
    dead = dead_letter(ctx, "validate", [reason("key:pattern", "m", "key", "jane@example.com")], raw, "f", 1)
    out = redact(dead)
    assert "jane" not in orjson.dumps(out).decode()
    assert out["raw_payload"] == f"[redacted sha256:{hashlib.sha256(raw).hexdigest()}]"
    assert (out["raw_bytes"], out["source_line"], out["reasons"][0]["code"]) == (len(raw), 1, "key:pattern")


@pytest.mark.e2e
def test_import_with_bots_dropped_pseudonyms_and_redaction(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVT_HASH_KEY", KEY.decode())
    lines = [line(envelope(1, clientId="jane@example.com", ua=IPHONE)),
             line(envelope(2, ua=GOOGLEBOT)),
             line(envelope(3, key="bad", clientId="bob@example.com")),
             line(envelope(4, ua=... ))]
    path = write_ndjson(tmp_path / "in.ndjson", lines)
    out = tmp_path / "out"
    code, report = run(["--input", str(path), "--output_dir", str(out), "--drop_bots", "--pseudonymize",
                        "clientId,tmpId", "--redact_dead_letters", "--direct_num_workers=1"])
    assert code == 0 and report["ok"]
    t = report["total"]
    assert (t["read"], t["loaded"], t["filtered_bot"], t["dead_lettered"]) == (4, 2, 1, 1)
    rows = {r["eventId"]: r for p in (out / "rows").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    jane = rows[envelope(1)["eventId"]]
    assert jane["clientId"] == hmac.new(KEY, b"jane@example.com", hashlib.sha256).hexdigest()
    assert jane["tmpId"] == hmac.new(KEY, envelope(1)["tmpId"].encode(), hashlib.sha256).hexdigest()
    assert jane["agent"]["os"] == "iOS" and rows[envelope(4)["eventId"]]["agent"] is None
    dead_text = "".join(p.read_text() for p in (out / "dead_letters").glob("*.ndjson"))
    assert "bob@example.com" not in dead_text and "[redacted sha256:" in dead_text
    everything = "".join(str(r) for r in rows.values())
    assert "jane@example.com" not in everything


def test_a_key_of_exactly_the_minimum_length_is_enough(monkeypatch):
    monkeypatch.setenv("TEST_HASH_KEY", "k" * 16)
    assert load_key("TEST_HASH_KEY", None) == b"k" * 16


class _SecretVersions:
    """Secret Manager's client, answering for the versions it holds (no local Secret Manager exists)."""

    secrets: dict[str, bytes] = {}

    def access_secret_version(self, name):
        class Payload:
            data = self.secrets[name]

        class Response:
            payload = Payload

        return Response


def test_a_key_from_secret_manager_is_read_from_the_named_version(monkeypatch):
    from google.cloud import secretmanager

    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", _SecretVersions)
    name = "projects/p/secrets/rlvt-hash/versions/3"
    monkeypatch.setattr(_SecretVersions, "secrets", {name: b"s" * 32, "projects/p/secrets/short/versions/1": b"s"})
    monkeypatch.setenv("RLVT_HASH_KEY", "an environment key that is not used")
    assert load_key("RLVT_HASH_KEY", name) == b"s" * 32
    with pytest.raises(MissingKeyError, match="at least 16 bytes"):
        load_key("RLVT_HASH_KEY", "projects/p/secrets/short/versions/1")


def test_pseudonyms_of_a_chunked_column_and_of_an_all_null_one():
    chunked = pa.chunked_array([pa.array(["a", None]), pa.array(["a", "b"])])
    digest = {v: hmac.new(KEY, v.encode(), hashlib.sha256).hexdigest() for v in ("a", "b")}
    out = pseudonymize(chunked, KEY)
    assert out.to_pylist() == [digest["a"], None, digest["a"], digest["b"]]
    nulls = pseudonymize(pa.array([None, None], pa.string()), KEY)
    assert nulls.type == pa.string() and nulls.to_pylist() == [None, None]


def test_redaction_digests_any_payload_even_a_lone_surrogate_or_none():
    ctx = ImportContext("run", 0)
    # a payload that was not UTF-8 travels base64-encoded beside an escaped text: both go
    dead = {**dead_letter(ctx, "parse", [reason("parse:invalid_unicode", "m", None, "\ud800")], b"x", "f", 1),
            "raw_payload": "a\ud800b", "raw_payload_base64": "YYBi"}
    out = redact(dead)
    surrogate_escaped = "a\ud800b".encode("utf-8", "surrogatepass")  # UTF-8's form of the lone surrogate
    assert surrogate_escaped == b"a\xed\xa0\x80b"
    assert out["raw_payload"] == f"[redacted sha256:{hashlib.sha256(surrogate_escaped).hexdigest()}]"
    assert out["raw_payload_base64"] is None and out["reasons"][0]["value"] is None
    empty = redact({**dead, "raw_payload": None})
    assert empty["raw_payload"] == f"[redacted sha256:{hashlib.sha256(b'').hexdigest()}]"


AGENT = pa.struct([("browser", pa.string()), ("browser_version", pa.string()), ("os", pa.string()),
                   ("os_version", pa.string()), ("device", pa.string()), ("is_bot", pa.bool_())])


@pytest.mark.parametrize("ua, browser_version, os_version", [
    (IPHONE, "17.1", "17.1"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 "
     "Safari/537.36", "120.0.6099", "10"),
    ("curl/8.4.0", "8.4.0", None),
    ("SomethingUnknown", None, None),
])
def test_versions_join_the_parts_the_rule_set_found(ua, browser_version, os_version):
    agent = parse_agent(ua)
    assert (agent["browser_version"], agent["os_version"]) == (browser_version, os_version)


def test_agents_of_a_chunked_column_and_of_an_all_null_one():
    chunked = pa.chunked_array([pa.array([IPHONE, None]), pa.array([GOOGLEBOT])])
    out = agents_column(chunked, AGENT)
    assert out.type == AGENT
    assert [a and a["browser"] for a in out.to_pylist()] == ["Mobile Safari", None, "Googlebot"]
    nulls = agents_column(pa.array([None], pa.string()), AGENT)
    assert nulls.type == AGENT and nulls.to_pylist() == [None]
