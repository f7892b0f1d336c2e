"""[actions.*], [[policies]], [limits], [recurring]: validation names the key path, the value and what is
allowed; every shipped action pack in examples/actions loads through the real config loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmaintd import config
from pmaintd.act.templates import render

ROOT = Path(__file__).resolve().parents[2]
PACKS = sorted((ROOT / "examples" / "actions").glob("*.toml"))


def _load(tmp_path: Path, text: str) -> config.Config:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return config.load(p)


ACTION = '[actions.drain]\nrun_on = "local"\ncommand = "echo {entity}"\n'


def test_policy_with_unknown_action_names_key_value_and_allowed(tmp_path: Path) -> None:
    text = ACTION + '[[policies]]\nname = "p"\nkind = "host"\nmin_probability = 0.5\naction = "evacuate"\n'
    with pytest.raises(config.ConfigError) as e:
        _load(tmp_path, text)
    assert "policies[0].action: 'evacuate' is not allowed: one of the [actions.*] names: drain" in str(e.value)


def test_run_on_unknown_host_names_key_value_and_allowed(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as e:
        _load(tmp_path, '[actions.drain]\nrun_on = "lb9"\ncommand = "true"\n')
    assert "actions.drain.run_on: 'lb9' is not allowed: one of the hosts: local" in str(e.value)


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as e:
        _load(tmp_path, '[actions.drain]\nrun_on = "local"\ncommand = "x"\nundo = "echo {serial}"\n')
    assert "actions.drain.undo" in str(e.value) and "unknown placeholder {serial}" in str(e.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (ACTION + '[[policies]]\nname = "p"\nkind = "hots"\nmin_probability = 0.5\naction = "drain"\n',
         "policies[0].kind"),
        (ACTION + '[[policies]]\nname = "p"\nkind = "host"\nmin_probability = 1.5\naction = "drain"\n',
         "policies[0].min_probability"),
        (ACTION + '[[policies]]\nname = "p"\nkind = "host"\nmin_probability = 0.5\naction = "drain"\nmode = "yolo"\n',
         "policies[0].mode"),
        ("[limits]\nmax_fleet_fraction = 0\n", "limits.max_fleet_fraction"),
        ('[limits]\ncooldown = "soon"\n', "limits.cooldown"),
        ("[recurring]\ncount = 1\n", "recurring.count"),
    ],
)  # fmt: skip
def test_bad_values_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        _load(tmp_path, text)
    assert key in str(e.value)


def test_duplicate_policy_names_are_refused(tmp_path: Path) -> None:
    pol = '[[policies]]\nname = "p"\nkind = "host"\nmin_probability = 0.5\naction = "drain"\n'
    with pytest.raises(config.ConfigError, match=r"policies\[1\]\.name"):
        _load(tmp_path, ACTION + pol + pol)


def test_defaults_are_safe() -> None:
    cfg = config.Config()
    assert cfg.policies == [] and cfg.actions == {}
    assert cfg.limits.max_concurrent == 1 and cfg.limits.max_fleet_fraction <= 0.1


def test_policy_mode_defaults_to_observe(tmp_path: Path) -> None:
    cfg = _load(tmp_path, ACTION + '[[policies]]\nname = "p"\nkind = "host"\nmin_probability = 0.5\naction = "drain"\n')
    assert cfg.policies[0].mode == "observe"


@pytest.mark.parametrize("pack", PACKS, ids=[p.name for p in PACKS])
def test_action_pack_loads_and_renders(pack: Path, tmp_path: Path) -> None:
    """The packs name /etc/pmaintd/ssh/* (which must exist to load); they are pointed at temp files here."""
    for f in ("id_ed25519", "known_hosts"):
        (tmp_path / f).write_text("placeholder\n")
    cfg = _load(tmp_path, pack.read_text().replace("/etc/pmaintd/ssh/", f"{tmp_path}/"))
    assert cfg.actions and cfg.policies
    values = {"entity": "x; touch /tmp/p", "host": "$(reboot)", "kind": "host", "probability": 0.9,
              "horizon_hours": 24.0}  # fmt: skip
    for action in cfg.actions.values():
        for t in (action.command, action.verify, action.undo):
            if t:
                out = render(t, values)
                assert "'x; touch /tmp/p'" in out or "'$(reboot)'" in out


def test_packs_cover_the_documented_systems() -> None:
    text = "\n".join(p.read_text() for p in PACKS)
    for needle in ("kubectl drain", "kubectl uncordon", "virsh", "migrate --live", "ceph osd out", "ceph osd in",
                   "ceph osd reweight", "state drain", "state ready", "systemctl stop"):  # fmt: skip
        assert needle in text, needle


def test_unknown_key_in_an_action_lists_the_allowed_keys(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as e:
        _load(tmp_path, ACTION + "retries = 3\n")
    allowed = "allowed keys here: command, description, run_on, timeout, undo, verify"
    assert f"actions.drain.retries: unknown key; {allowed}" in str(e.value)
