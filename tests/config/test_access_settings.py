"""Access declared in lore.toml: bad principals, unknown groups and unknown sources fail at
start-up, naming the setting and its line."""

from __future__ import annotations

import textwrap

import pytest

from config.loader import ConfigError, load_settings


def _load(tmp_path, body: str):
    path = tmp_path / "lore.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    (tmp_path / "docs").mkdir(exist_ok=True)
    return load_settings(path)


SOURCES = """
[[sources]]
name = "handbook"
type = "directory"
path = "docs"

[[sources]]
name = "hr"
type = "directory"
path = "docs"
access = ["group:hr"]

[[sources.access_rules]]
glob = "public/**"
access = ["public"]

[[sources.access_rules]]
glob = "payroll/*.md"
access = ["group:finance", "channel:slack:C0123ABC"]
"""


def test_a_valid_access_declaration_loads(tmp_path):
    settings = _load(
        tmp_path,
        SOURCES
        + """
[groups]
hr = ["slack:U0123ABC", "slack:group:S0456DEF", "discord:role:123456789", "email:*@acme.com", "web:alice"]
finance = ["discord:987654321", "email:cfo@acme.com"]
""",
    )
    assert settings.sources[0].access == ["public"]
    assert settings.sources[1].access == ["group:hr"]
    assert [r.glob for r in settings.sources[1].access_rules] == ["public/**", "payroll/*.md"]
    assert settings.groups["hr"][3] == "email:*@acme.com"


def test_an_unknown_group_fails_naming_its_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, SOURCES + '\n[groups]\nhr = ["web:alice"]\n')
    message = str(err.value)
    assert "unknown group 'finance'" in message
    assert "sources.1.access_rules.1.access.0" in message
    lines = (tmp_path / "lore.toml").read_text().splitlines()
    line = int(message.split(", line ")[1].split(")")[0])
    assert lines[line - 1].startswith('access = ["group:finance"')


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ('hr = ["slack:alice"]', "groups.hr.0"),
        ('hr = ["U0123ABC"]', "groups.hr.0"),
        ('hr = ["group:other"]', "groups.hr.0"),
        ('hr = ["email:nobody"]', "groups.hr.0"),
    ],
)
def test_a_malformed_group_member_fails(tmp_path, entry, where):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, SOURCES.replace("group:finance", "group:hr") + f"\n[groups]\n{entry}\n")
    assert where in str(err.value)
    assert "is not a principal" in str(err.value)


def test_a_malformed_access_entry_fails_naming_its_line(tmp_path):
    body = SOURCES.replace('access = ["group:hr"]', 'access = ["hr-team"]').replace("group:finance", "public")
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, body)
    message = str(err.value)
    assert "sources.1.access.0" in message and "is not an access entry" in message
    line = int(message.split(", line ")[1].split(")")[0])
    assert (tmp_path / "lore.toml").read_text().splitlines()[line - 1] == 'access = ["hr-team"]'


def test_an_empty_access_list_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"sources\.0\.access"):
        _load(tmp_path, '[[sources]]\nname = "a"\ntype = "directory"\npath = "docs"\naccess = []\n')


def test_a_channel_scope_naming_an_unknown_source_fails(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(
            tmp_path,
            '[[sources]]\nname = "wiki"\ntype = "directory"\npath = "docs"\n\n'
            '[[slack.channel_sources]]\nchannel = "C0123ABC"\nsources = ["wikki"]\n',
        )
    assert "slack.channel_sources.0.sources.0" in str(err.value)
    assert "unknown source 'wikki' (sources: wiki)" in str(err.value)
