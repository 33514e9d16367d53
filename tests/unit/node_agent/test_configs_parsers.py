"""Each configuration-file parser on real-looking game files: keys, indexes, wildcards,
``regex:`` values, placeholders, missing keys, and files that do not parse."""

from __future__ import annotations

import json
import tomllib
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from node_agent.configs.apply import EDITORS, build_rules
from node_agent.configs.placeholders import PlaceholderValues
from node_agent.configs.rules import Problems
from node_agent.configs.text import Unparsable
from shared.server_spec import ConfigFile, ConfigParserName, ConfigReplacement, ServerSpec
from tests.support.factories import server_spec

DATA = Path(__file__).parent / "configs_data"
Rule = tuple[str, str] | tuple[str, str, str]


def values(bridge: str | None = "172.18.0.1") -> PlaceholderValues:
    spec = ServerSpec.model_validate(
        server_spec(
            uuid=str(uuid.uuid4()),
            memory_mib=2048,
            environment={"MAX_PLAYERS": "42", "SERVER_NAME": "Stellar $1 Test", "MOTD": "a\nb"},
            allocations=[{"ip": "203.0.113.7", "port": 30000}],
        )
    )
    return PlaceholderValues.of(spec, bridge)


def edit(parser: ConfigParserName, data: bytes, *rules: Rule) -> tuple[bytes, list[str]]:
    """``data`` after ``rules`` ((match, value[, if_value])), and the problems reported."""
    config = ConfigFile(
        path="/f",
        parser=parser,
        replace=tuple(
            {"match": rule[0], "value": rule[1], "if_value": rule[2] if len(rule) > 2 else None}
            for rule in rules
        ),
    )
    problems = Problems()
    built = build_rules(config, values(), problems)
    return EDITORS[parser](data, built, problems), problems.items


# --- properties ------------------------------------------------------------------------------


def test_properties_sets_keys_in_place_and_keeps_every_other_line() -> None:
    original = (DATA / "server.properties").read_bytes()
    out, problems = edit(
        "properties",
        original,
        ("server-port", "{{server.allocations.default.port}}"),
        ("server-ip", "0.0.0.0"),
        ("rcon.port", "{{server.build.default.port}}"),
        ("max-players", "{{server.environment.MAX_PLAYERS}}"),
        ("motd", "§6Stellar {{env.MOTD}}"),
        ("enable-query", "true", "false"),
        ("difficulty", "hard", "peaceful"),  # if_value does not match: left
        ("white-list", "true"),  # missing: appended
    )
    assert problems == []
    lines = out.decode().splitlines()
    before = original.decode().splitlines()
    assert lines[:2] == before[:2]  # the comments
    assert "server-port=30000" in lines
    assert "server-ip=0.0.0.0" in lines
    assert "rcon.port=30000" in lines
    assert "max-players=42" in lines
    assert "motd=\\u00A7" + "6Stellar a b" in lines  # non-ASCII escaped, the line break gone
    assert "enable-query=true" in lines
    assert "difficulty=easy" in lines
    assert lines[-1] == "white-list=true"
    assert "level-type=minecraft\\:normal" in lines  # untouched escapes stay as written
    assert lines.index("server-port=30000") == before.index("server-port=25565")


def test_properties_reads_colons_blanks_escapes_and_continuations() -> None:
    original = b"# c\n! bang\nkey\\ one : old\nlong = a\\\n    b\nsep value\n"
    out, _ = edit("properties", original, ("key one", "new"), ("long", "c", "ab"), ("sep", "x"))
    assert out == b"# c\n! bang\nkey\\ one : new\nlong = c\nsep x\n"


def test_properties_regex_if_value_uses_groups() -> None:
    out, _ = edit(
        "properties",
        b"server-ip=127.0.0.1:25565\n",
        ("server-ip", "{{config.docker.interface}}$2", r"regex:^(127\.0\.0\.1|localhost)(:\d+)?$"),
    )
    assert out == b"server-ip=172.18.0.1:25565\n"


def test_properties_with_nothing_to_change_is_returned_as_it_was() -> None:
    original = (DATA / "server.properties").read_bytes()
    out, _ = edit("properties", original, ("pvp", "true"), ("gamemode", "x", "creative"))
    assert out is original


# --- yaml (BungeeCord) -------------------------------------------------------------------------


def test_bungeecord_listener_index_and_server_wildcard_regex() -> None:
    original = (DATA / "config.yml").read_bytes()
    out, problems = edit(
        "yaml",
        original,
        ("listeners[0].host", "0.0.0.0:{{server.build.default.port}}"),
        ("listeners[0].query_port", "{{server.build.default.port}}"),
        (
            "servers.*.address",
            "{{config.docker.interface}}$2",
            r"regex:^(127\.0\.0\.1|localhost)(:\d{1,5})?$",
        ),
        ("ip_forward", "true"),
        ("player_limit", "{{server.environment.MAX_PLAYERS}}"),
        ("settings.new.nested", "yes"),
    )
    assert problems == []
    document = YAML(typ="safe").load(out)
    assert document["listeners"][0]["host"] == "0.0.0.0:30000"
    assert document["listeners"][0]["query_port"] == 30000  # an int stays an int
    servers = document["servers"]
    assert servers["lobby"]["address"] == "172.18.0.1:25565"
    assert servers["survival"]["address"] == "172.18.0.1:25566"
    assert servers["remote"]["address"] == "10.0.0.5:25565"  # no match: left
    assert document["ip_forward"] is True
    assert document["player_limit"] == 42
    assert document["settings"] == {"new": {"nested": "yes"}}
    text = out.decode()
    assert text.startswith("# BungeeCord configuration\n")
    assert "# the survival backend" in text
    assert 'motd: "Survival"' in text
    assert "- bungeecord.command.server" in text  # the sequences' indentation kept


def test_yaml_index_out_of_range_and_value_over_a_table_are_left() -> None:
    original = (DATA / "config.yml").read_bytes()
    out, problems = edit("yaml", original, ("listeners[3].host", "x"), ("servers", "x"))
    assert out == original
    assert problems == ["servers is a table or a list, not a value"]


def test_yaml_that_does_not_parse_is_refused() -> None:
    with pytest.raises(Unparsable):
        edit("yaml", b"servers: [unclosed\n  - x: {\n", ("a", "b"))


# --- toml (Velocity) ---------------------------------------------------------------------------


def test_velocity_toml_keeps_comments_and_types() -> None:
    original = (DATA / "velocity.toml").read_bytes()
    out, problems = edit(
        "toml",
        original,
        ("bind", "0.0.0.0:{{server.allocations.default.port}}"),
        ("show-max-players", "{{env.MAX_PLAYERS}}"),
        ("online-mode", "false"),
        ("servers.*", "{{config.docker.interface}}$1", r"regex:^127\.0\.0\.1(:\d+)$"),
        ("servers.try[0]", "factions"),
        ('forced-hosts["lobby.example.com"][0]', "factions"),
        ("query.port", "{{server.build.default.port}}"),
        ("advanced.compression-level", "-1"),
    )
    assert problems == []
    document = tomllib.loads(out.decode())
    assert document["bind"] == "0.0.0.0:30000"
    assert document["show-max-players"] == 42
    assert document["online-mode"] is False
    assert document["servers"]["lobby"] == "172.18.0.1:30066"
    assert document["servers"]["factions"] == "172.18.0.1:30067"
    assert document["servers"]["try"] == ["factions"]
    assert document["forced-hosts"]["lobby.example.com"] == ["factions"]
    assert document["query"]["port"] == 30000
    assert document["advanced"]["compression-level"] == -1
    text = out.decode()
    assert "# What port should the proxy be bound to?" in text
    assert "# Configure your servers here." in text


# --- ini (ARK) -------------------------------------------------------------------------------


def test_ark_ini_sections_bracketed_names_wildcards_and_new_keys() -> None:
    original = (DATA / "GameUserSettings.ini").read_bytes()
    out, problems = edit(
        "ini",
        original,
        ("ServerSettings.MaxPlayers", "{{server.environment.MAX_PLAYERS}}"),
        ("ServerSettings.ServerAdminPassword", "secret", "changeme"),
        ("SessionSettings.Port", "{{server.allocations.default.port}}"),
        ("[/Script/Engine.GameSession].MaxPlayers", "{{env.MAX_PLAYERS}}"),
        ("MessageOfTheDay.Message", "Hello {{env.MOTD}}"),
        ("*.QueryPort", "30001"),
        ("ServerSettings.AllowThirdPersonPlayer", "True"),
        ("NewSection.Key", "1"),
    )
    assert problems == []
    text = out.decode()
    assert "[ServerSettings]\nServerPassword=\nServerAdminPassword=secret\nMaxPlayers=42\n" in text
    assert "DifficultyOffset=0.2\nAllowThirdPersonPlayer=True\n\n; tweaks made by hand\n" in text
    assert "Port=30000\nQueryPort=30001\n" in text
    assert "[/Script/Engine.GameSession]\nMaxPlayers=42\n" in text
    assert 'Message="Hello a b"\n' in text  # quotes kept, the variable's line break gone
    assert text.endswith("Duration=20\n[NewSection]\nKey=1\n")


# --- xml (7 Days to Die) -----------------------------------------------------------------------


def test_7dtd_serverconfig_attributes_by_predicate() -> None:
    original = (DATA / "serverconfig.xml").read_bytes()
    out, problems = edit(
        "xml",
        original,
        ("ServerSettings.property[@name='ServerPort']", "[value='{{server.build.default.port}}']"),
        ("ServerSettings.property[@name='ServerMaxPlayerCount'].@value", "{{env.MAX_PLAYERS}}"),
        ("ServerSettings.property[@name='TelnetEnabled'].@value", "false", "true"),
        ("ServerSettings.property[@name='EACEnabled'].@value", "false"),  # created
        ("ServerSettings.property[1].@value", "Stellar"),  # XPath: from 1
    )
    assert problems == []
    text = out.decode()
    assert text.startswith('<?xml version="1.0"?>\n<!-- 7 Days to Die dedicated server')
    assert '<property name="ServerPort" value="30000" />' in text
    assert '<property name="ServerMaxPlayerCount" value="42" />' in text
    assert '<property name="TelnetEnabled" value="false" />' in text
    assert '<property name="EACEnabled" value="false" />' in text
    assert '<property name="ServerName" value="Stellar" />' in text
    assert "<!-- Port you want the server to listen on. -->" in text


def test_a_variable_shaped_like_the_attribute_form_is_text_not_an_attribute() -> None:
    """Whether a value sets an attribute (``[attr='v']``) is the blueprint's choice: an
    owner's SERVER_NAME of "[name='ServerPort']" renamed the element instead."""
    original = (
        b'<ServerSettings>\n  <property name="ServerName">x</property>\n'
        b'  <property name="ServerPort">26900</property>\n</ServerSettings>\n'
    )
    spec = ServerSpec.model_validate(
        server_spec(uuid=str(uuid.uuid4()), environment={"SERVER_NAME": "[name='ServerPort']"})
    )
    config = ConfigFile(
        path="/f",
        parser="xml",
        replace=(
            {
                "match": "ServerSettings.property[@name='ServerName']",
                "value": "{{env.SERVER_NAME}}",
            },
        ),
    )
    problems = Problems()
    out = EDITORS["xml"](
        original, build_rules(config, PlaceholderValues.of(spec, None), problems), problems
    )
    assert b"<property name=\"ServerName\">[name='ServerPort']</property>" in out
    assert out.count(b'name="ServerPort"') == 1


def test_xml_element_text_paths_are_created() -> None:
    original = (
        b"<MyConfigDedicated>\n  <SessionSettings>\n    <MaxPlayers>4</MaxPlayers>\n"
        b"  </SessionSettings>\n</MyConfigDedicated>\n"
    )
    out, _ = edit(
        "xml",
        original,
        ("MyConfigDedicated.SessionSettings.MaxPlayers", "{{server.build.env.MAX_PLAYERS}}"),
        ("MyConfigDedicated.ServerPort", "{{server.build.default.port}}"),
        ("OtherRoot.X", "1"),  # another root: nothing
    )
    assert out == (
        b"<MyConfigDedicated>\n  <SessionSettings>\n    <MaxPlayers>42</MaxPlayers>\n"
        b"  </SessionSettings>\n  <ServerPort>30000</ServerPort>\n</MyConfigDedicated>\n"
    )


def test_xml_with_entities_is_refused_unexpanded() -> None:
    bomb = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n<lolz>&lol2;</lolz>\n'
    )
    with pytest.raises(Unparsable, match="entities"):
        edit("xml", bomb, ("lolz", "x"))
    external = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<x>&e;</x>'
    with pytest.raises(Unparsable, match="entities"):
        edit("xml", external, ("x", "y"))


# --- json --------------------------------------------------------------------------------------


def test_json_indexes_wildcards_types_and_indentation() -> None:
    original = (DATA / "config.json").read_bytes()
    out, problems = edit(
        "json",
        original,
        ("server.port", "{{server.build.default.port}}"),  # a string stays a string
        ("server.maxPlayers", "{{env.MAX_PLAYERS}}"),
        ("server.pvp", "false"),
        ("server.listeners[*].host", "0.0.0.0"),
        ("server.listeners.*.port", "{{server.build.default.port}}"),
        ("server.listeners[1].host", "{{config.docker.interface}}"),
        ("server.name", "{{env.SERVER_NAME}}"),
        ("server.memory", "{{server.build.memory}}"),
    )
    assert problems == [
        "server.listeners[*].host: a '[' that is not [n], [\"name\"] or [@attr='v']"
    ]
    document = json.loads(out)
    assert document["server"]["port"] == "30000"
    assert document["server"]["maxPlayers"] == 42
    assert document["server"]["pvp"] is False
    assert document["server"]["listeners"] == [
        {"host": "127.0.0.1", "port": 30000},
        {"host": "172.18.0.1", "port": 30000},
    ]
    assert document["server"]["name"] == "Stellar $1 Test"  # a "$1" in a variable is text
    assert document["server"]["memory"] == 2048
    assert out.decode().startswith('{\n  "server": {\n    "name"')
    assert '"motd": "Welcome ☺"' in out.decode()


def test_json_that_does_not_parse_is_refused() -> None:
    with pytest.raises(Unparsable, match="JSON"):
        edit("json", b'{"a": 1,,}', ("a", "2"))


# --- file (line prefix) ------------------------------------------------------------------------


def test_file_parser_replaces_lines_by_prefix() -> None:
    original = (DATA / "velocity.toml").read_bytes()
    out, _ = edit("file", original, ("bind = ", 'bind = "0.0.0.0:{{server.build.default.port}}"'))
    assert out == original.replace(b'bind = "0.0.0.0:25565"', b'bind = "0.0.0.0:30000"')


def test_file_parser_regex_replaces_within_the_line_and_keeps_crlf() -> None:
    original = b"sv_port 27015\r\nhostname old\r\n"
    out, _ = edit(
        "file",
        original,
        ("sv_port", "sv_port {{server.build.default.port}}"),
        ("hostname", "hostname $1-{{env.MAX_PLAYERS}}", r"regex:^hostname (\w+)$"),
    )
    assert out == b"sv_port 30000\r\nhostname old-42\r\n"


# --- placeholders ------------------------------------------------------------------------------


def test_unknown_placeholders_and_agent_settings_become_empty_and_are_reported() -> None:
    out, problems = edit(
        "properties",
        b"a=1\n",
        ("a", "{{config.remote}}{{config.token}}{{server.build.env.NOPE}}x"),
    )
    assert out == b"a=x\n"
    assert problems == [
        "unknown placeholder {{config.remote}} left empty",
        "unknown placeholder {{config.token}} left empty",
        "unknown placeholder {{server.build.env.NOPE}} left empty",
    ]


def test_bad_regex_is_refused_with_the_spec_and_reported_if_a_node_still_meets_one() -> None:
    with pytest.raises(ValidationError) as caught:
        ConfigReplacement(match="a", value="x", if_value="regex:(unclosed")
    [error] = caught.value.errors()
    assert error["loc"] == ("if_value",)
    assert "regex:'(unclosed' cannot be used: missing )" in error["msg"]
    # A spec validated by an older control plane: the rule is reported, the others apply.
    config = ConfigFile.model_construct(
        path="/f",
        parser="properties",
        replace=(
            ConfigReplacement.model_construct(match="a", value="x", if_value="regex:(unclosed"),
            ConfigReplacement(match="b", value="3"),
        ),
    )
    problems = Problems()
    built = build_rules(config, values(), problems)
    assert EDITORS["properties"](b"a=1\nb=2\n", built, problems) == b"a=1\nb=3\n"
    assert problems.items[0].startswith("a: bad regex:'(unclosed'")


def test_yaml_tags_build_no_object_and_are_written_back(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    original = f'a: !!python/object/apply:os.system ["touch {marker}"]\nb: 1\nc: !x {{y: 1}}\n'
    out, problems = edit("yaml", original.encode(), ("b", "2"))
    assert problems == []
    assert out.decode() == original.replace("b: 1", "b: 2")
    assert not marker.exists()


def test_xml_keeps_what_surrounds_the_root_element() -> None:
    original = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE ServerSettings>\n<!-- before -->\n'
        b"<ServerSettings><!-- inside --><?pi keep?><Port>1</Port></ServerSettings>\n"
        b"<!-- after -->\n"
    )
    out, _ = edit("xml", original, ("ServerSettings.Port", "2"))
    assert out == original.replace(b"<Port>1</Port>", b"<Port>2</Port>")
