"""[snmp] config: every cross-field mistake is refused with the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from pmaintd.collect.snmp import SnmpCollector
from pmaintd.config import ConfigError, validate


def _problems(snmp: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate({"snmp": snmp})
    return exc.value.problems


def _target(**kw):
    return {"name": "sw1", "address": "192.0.2.1:161", **kw}


@pytest.fixture
def secret(tmp_path):
    p = tmp_path / "secret"
    p.write_text("s3cret-value\n")
    return str(p)


def test_defaults_and_inheritance(secret):
    cfg = validate({"snmp": {"timeout": "3s", "retries": 2, "max_repetitions": 10, "interval": "5m", "targets": [
        _target(community="public"),
        _target(name="sw2", address="[2001:db8::1]", community_file=secret, timeout="500ms", interval="30s"),
    ]}}).snmp
    coll = SnmpCollector(cfg)
    a, b = (t.options.endpoint for t in coll.targets())
    assert (a.host, a.port, a.timeout, a.retries, a.max_repetitions) == ("192.0.2.1", 161, 3.0, 2, 10)
    assert (b.host, b.port, b.timeout, b.credentials.community) == ("2001:db8::1", 161, 0.5, "s3cret-value")
    assert [t.interval for t in coll.targets()] == [300.0, 30.0]
    assert "s3cret-value" not in repr(b) and "public" not in repr(a.credentials)


def test_no_targets_means_no_collector():
    from pmaintd.collect import build

    assert not [c for c in build(validate({})) if c.name == "snmp"]
    assert [c.name for c in build(validate({"snmp": {"targets": [_target(community="x")]}}), only=["snmp"])] == ["snmp"]


def test_v3_without_user():
    assert _problems({"targets": [_target(version="3")]}) == [
        "snmp.targets[0].user: None is not allowed: version = \"3\" needs a user"]


def test_both_community_and_community_file(secret):
    assert _problems({"targets": [_target(community="public", community_file=secret)]}) == [
        f"snmp.targets[0].community_file: {secret!r} is not allowed: set community or community_file, not both"]


def test_neither_community_nor_file():
    assert _problems({"targets": [_target(version="1")]}) == [
        "snmp.targets[0].community: None is not allowed: version \"1\" needs community or community_file"]


def test_unknown_protocols_list_the_allowed_ones(secret):
    (p,) = _problems({"targets": [_target(version="3", user="u", auth_protocol="SHA1", auth_password_file=secret)]})
    assert p == ("snmp.targets[0].auth_protocol: 'SHA1' is not allowed: "
                 "one of SHA, SHA-224, SHA-256, SHA-384, SHA-512, MD5")
    (p,) = _problems({"targets": [_target(version="3", user="u", auth_protocol="SHA", auth_password_file=secret,
                                          priv_protocol="DES", priv_password_file=secret)]})
    assert p == ("snmp.targets[0].priv_protocol: 'DES' is not allowed: "
                 "one of AES, AES-128, AES-192, AES-256, AES-192-C, AES-256-C")


def test_v3_pairs_and_levels(secret):
    (p,) = _problems({"targets": [_target(version="3", user="u", auth_protocol="SHA")]})
    assert p == ("snmp.targets[0].auth_password_file: None is not allowed: "
                 "auth_protocol and auth_password_file go together")
    (p,) = _problems({"targets": [_target(version="3", user="u", priv_protocol="AES", priv_password_file=secret)]})
    assert p == ("snmp.targets[0].priv_protocol: 'AES' is not allowed: privacy needs authentication: "
                 "set auth_protocol too")
    (p,) = _problems({"targets": [_target(community="c", user="u")]})
    assert p == "snmp.targets[0].user: 'u' is not allowed: only allowed with version = \"3\""
    (p,) = _problems({"targets": [_target(version="3", user="u", community="c")]})
    assert p.startswith("snmp.targets[0].community: '(set)' is not allowed: SNMPv3 authenticates")


def test_duplicate_names_and_bad_values(tmp_path):
    (p,) = _problems({"targets": [_target(community="a"), _target(community="b")]})
    assert p == "snmp.targets[1].name: 'sw1' is not allowed: target names must be unique (also targets[0])"
    problems = _problems({"targets": [_target(community="a", address="sw1:99999", retries=-1, version="2")]})
    assert any(x.startswith("snmp.targets[0].address: 'sw1:99999' is not allowed: expected HOST or HOST:PORT")
               for x in problems)
    assert any(x.startswith("snmp.targets[0].version: '2' is not allowed") for x in problems)
    assert any(x.startswith("snmp.targets[0].retries: -1 is not allowed") for x in problems)
    (p,) = _problems({"targets": [_target(community="a", comunity="typo")]})
    assert p.startswith("snmp.targets[0].comunity: unknown key")
    (p,) = _problems({"profile_dirs": [str(tmp_path / "nope")]})
    assert p.startswith("snmp.profile_dirs: ") and "an existing folder" in p


def test_secret_files_must_exist(tmp_path):
    (p,) = _problems({"targets": [_target(community_file=str(tmp_path / "missing"))]})
    assert p.startswith("snmp.targets[0].community_file: ") and "existing, readable file" in p


def test_unknown_profile_override_is_a_config_error():
    cfg = validate({"snmp": {"targets": [_target(community="a", profile="cisco-ios")]}}).snmp
    with pytest.raises(ConfigError) as exc:
        SnmpCollector(cfg)
    assert exc.value.problems == ["snmp.targets[0].profile: 'cisco-ios' is not allowed: "
                                  "one of arista, cisco, generic, juniper, net-snmp"]


def test_example_config_has_every_snmp_key():
    """examples/pmaintd.toml documents each [snmp] and [[snmp.targets]] key (commented)."""
    from pathlib import Path

    from pmaintd.config import SnmpConfig, SnmpTargetConfig

    text = (Path(__file__).resolve().parents[3] / "examples" / "pmaintd.toml").read_text()
    section = text[text.index("[snmp]"):]
    assert "\n# [[snmp.targets]]\n" in section
    for key in [k for k in [*SnmpConfig.model_fields, *SnmpTargetConfig.model_fields] if k != "targets"]:
        assert f"\n{key} =" in section or f"\n# {key} =" in section, key


def test_unreadable_secret_is_a_config_error(tmp_path):
    bad = tmp_path / "community"
    bad.write_bytes(b"\xff\xfe not text")
    cfg = validate({"snmp": {"targets": [_target(community_file=str(bad))]}}).snmp
    with pytest.raises(ConfigError) as exc:
        SnmpCollector(cfg)
    assert exc.value.problems == [f"snmp.targets[0].community_file: {bad} is not UTF-8 text"]
