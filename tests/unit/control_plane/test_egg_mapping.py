"""Real community eggs (tests/data/eggs/) mapped to blueprints: each report's items, and
export -> import as a fixed point in both export formats."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from control_plane.schemas.blueprints import BlueprintCreate
from control_plane.services.eggs.exporting import export_egg
from control_plane.services.eggs.mapping import EXTENSION, MappedEgg, map_egg
from control_plane.services.eggs.reading import format_of, read_eggs
from control_plane.services.eggs.report import ReportItem

EGGS = Path(__file__).parents[2] / "data" / "eggs"
EGG_FILES = sorted(p.name for p in EGGS.iterdir() if p.suffix in (".json", ".yaml"))


def load(name: str) -> dict[str, Any]:
    (egg,) = read_eggs((EGGS / name).read_bytes(), format_of("", name))
    return egg


def mapped(name: str, *, accept_unknown_rules: bool = False) -> MappedEgg:
    return map_egg(load(name), accept_unknown_rules=accept_unknown_rules)


def blueprint_of(result: MappedEgg) -> BlueprintCreate:
    assert result.blueprint is not None, result.report.refusals
    return result.blueprint


def item(result: MappedEgg, field: str, outcome: str) -> list[str]:
    return [i.detail for i in result.report.items if i.field == field and i.outcome == outcome]


def test_the_test_data_covers_every_version_format_and_parser() -> None:
    versions, parsers, formats = set(), set(), set()
    for name in EGG_FILES:
        result = mapped(name, accept_unknown_rules=True)
        versions.add(result.version)
        formats.add(Path(name).suffix)
        parsers |= {c.parser for c in blueprint_of(result).config_files}
    assert versions == {"PTDL_v1", "PTDL_v2", "PLCN_v1", "PLCN_v2", "PLCN_v3"}
    assert formats == {".json", ".yaml"}
    assert parsers == {"properties", "json", "yaml", "ini", "xml", "file", "toml"}
    assert len(EGG_FILES) - 1 >= 8  # community eggs, besides the hand-written TOML one


def test_ptdl_v1_teamspeak_images_list_done_marker_and_ctrl_c() -> None:
    result = mapped("ptdl-v1-teamspeak3.json")
    blueprint = blueprint_of(result)
    assert result.version == "PTDL_v1"
    assert result.egg_uuid is None
    assert [i.image for i in blueprint.images] == ["ghcr.io/pterodactyl/yolks:debian"]
    assert blueprint.stop.model_dump() == {"type": "signal", "value": "SIGINT"}
    assert item(result, "config.stop", "changed") == [
        "'^C' sends SIGINT, as Ctrl+C would (Wings sends SIGKILL for it)"
    ]
    assert blueprint.startup_done == ["listening on 0.0.0.0:"]
    assert item(result, "config.logs", "ignored") == ["the agent keeps the console's lines itself"]
    assert blueprint.install is not None
    assert blueprint.install.entrypoint == "/bin/ash"
    assert (blueprint.install.needs_root, blueprint.install.volume_path) == (True, "/mnt/server")
    assert "\r" not in blueprint.install.script
    assert item(result, "scripts.installation.script", "changed") == [
        "Windows line ends made Unix ones"
    ]
    query_port = next(v for v in blueprint.variables if v.env == "QUERY_PORT")
    assert (query_port.type, query_port.min, query_port.max) == ("integer", 1025, 65535)
    assert not blueprint.image_command


def test_ptdl_v2_paper_properties_rewritten_to_our_port_placeholder() -> None:
    result = mapped("ptdl-v2-minecraft-paper.json")
    blueprint = blueprint_of(result)
    (properties,) = blueprint.config_files
    assert (properties.path, properties.parser) == ("server.properties", "properties")
    values = {r.match: r.value for r in properties.replace}
    assert values["server-port"] == "{{server.allocations.default.port}}"
    assert item(result, "config.files.server.properties", "changed") == [
        "{{server.build.default.port}} rewritten as {{server.allocations.default.port}}"
    ]
    assert blueprint.stop.model_dump() == {"type": "command", "value": "stop"}
    assert blueprint.features == ["eula", "java_version", "pid_limit"]
    assert len(blueprint.images) == 5
    assert blueprint.images[0].name == "Java 21"
    assert blueprint.startup.startswith("java -Xms128M")
    assert item(result, "startup", "mapped") == ["split into arguments, never given to a shell"]


def test_an_unknown_rule_refuses_the_egg_unless_accepted() -> None:
    # The egg's own rules (required|alpha_num|between:1,6) translate, and no community egg
    # has a rule left that does not: one is added.
    assert mapped("ptdl-v2-minecraft-bungeecord.json").blueprint is not None
    egg = load("ptdl-v2-minecraft-bungeecord.json")
    egg["variables"][0]["rules"] += "|exists:versions,name"
    refused = map_egg(egg, accept_unknown_rules=False)
    assert refused.blueprint is None
    assert refused.report.refusals == [
        ReportItem(
            "variables.BUNGEE_VERSION.rules",
            "refused",
            "cannot enforce 'exists:versions,name'; import with accept_unknown_rules to "
            "enforce the variable as a plain string instead",
        )
    ]
    accepted = map_egg(egg, accept_unknown_rules=True)
    version = next(v for v in blueprint_of(accepted).variables if v.env == "BUNGEE_VERSION")
    assert (version.type, version.required, version.max, version.format) == (
        "string",
        True,
        None,
        None,
    )
    changed = item(accepted, "variables.BUNGEE_VERSION.rules", "changed")
    assert "exists:versions,name: looks the value up in the panel's database" in changed
    assert changed[-1] == "cannot enforce 'exists:versions,name': enforced as a string"
    (config,) = blueprint_of(accepted).config_files
    assert config.parser == "yaml"
    assert {r.match: r.value for r in config.replace}["listeners[0].host"] == (
        "0.0.0.0:{{server.allocations.default.port}}"
    )


def test_ptdl_v2_openttd_ini_with_lower_case_variables() -> None:
    result = mapped("ptdl-v2-openttd.json")
    (config,) = blueprint_of(result).config_files
    assert config.parser == "ini"
    assert {r.match: r.value for r in config.replace}["network.server_name"] == (
        "{{server.environment.srv_name}}"
    )
    assert "{{server.build.env.srv_name}} rewritten as {{server.environment.srv_name}}" in item(
        result, "config.files.openttd.cfg", "changed"
    )


def test_7_days_to_die_shell_startup_and_ld_library_path_renamed() -> None:
    result = mapped("ptdl-v2-7-days-to-die.json")
    blueprint = blueprint_of(result)
    assert blueprint.image_command
    assert item(result, "startup", "changed") == [
        "uses shell syntax (&&, ;, |, $VAR, redirections …) that cannot be split into "
        "arguments: the image's own command runs it from STARTUP, as egg images do"
    ]
    names = [v.env for v in blueprint.variables]
    assert "LD_LIBRARY_PATH" not in names
    assert "SERVER_LD_LIBRARY_PATH" in names
    assert item(result, "variables.LD_LIBRARY_PATH", "changed") == [
        "LD_LIBRARY_PATH is set by the agent itself: renamed SERVER_LD_LIBRARY_PATH (the "
        "startup command, configuration files and install script follow)"
    ]
    assert "LD_LIBRARY_PATH" not in blueprint.startup.replace("SERVER_LD_LIBRARY_PATH", "")
    assert blueprint.stop.model_dump() == {"type": "command", "value": "shutdown"}


def test_pelican_v1_foundry_json_parser_and_uuid() -> None:
    result = mapped("plcn-v1-foundry-vtt.json")
    blueprint = blueprint_of(result)
    assert result.egg_uuid == "ce000ebf-dc6b-45ee-823d-b802005aaceb"
    (config,) = blueprint.config_files
    assert (config.path, config.parser, len(config.replace)) == (
        "data/Config/options.json",
        "json",
        4,
    )
    assert blueprint.startup_done == ["Server started and listening on port"]


def test_pelican_v2_trackmania_xml() -> None:
    result = mapped("plcn-v2-trackmania2020.json")
    (config,) = blueprint_of(result).config_files
    assert (config.parser, len(config.replace)) == ("xml", 9)
    assert item(result, "config.files.UserData/Config/dedicated_cfg.xml", "mapped") == [
        "xml: 9 key(s) set before each start"
    ]


def test_pelican_v3_velocity_file_parser_and_icon_ignored() -> None:
    result = mapped("plcn-v3-minecraft-velocity.json")
    blueprint = blueprint_of(result)
    (config,) = blueprint.config_files
    assert config.parser == "file"
    assert config.replace[0].match == "bind = "
    assert blueprint.stop.model_dump() == {"type": "command", "value": "end"}
    assert item(result, "image", "ignored") == ["not an image reference (an icon)"]


def test_pelican_v3_yaml_craftopia() -> None:
    result = mapped("plcn-v3-craftopia.yaml")
    blueprint = blueprint_of(result)
    assert result.egg_uuid == "6304c348-83aa-420a-aa84-15a52d995964"
    assert blueprint.config_files[0].parser == "ini"
    assert blueprint.startup_done == ["World is loaded!"]
    assert item(result, "tags", "ignored") == ["tags are not kept"]


def test_toml_egg_renames_rewrites_and_config_placeholders() -> None:
    result = mapped("stellar-toml-example.yaml")
    blueprint = blueprint_of(result)
    assert blueprint.startup == (
        './game --port {{SERVER_PORT}} --memory {{SERVER_MEMORY}} --name "{{SERVER_NAME}}"'
    )
    assert item(result, "startup_commands", "ignored") == [
        "a blueprint has one startup command: 'Default' is kept, 'Debug' not"
    ]
    assert [v.env for v in blueprint.variables] == ["SERVER_NAME", "SERVER_SERVER_PORT"]
    (config,) = blueprint.config_files
    values = [(r.match, r.if_value, r.value) for r in config.replace]
    assert values == [
        ("server.port", None, "{{server.allocations.default.port}}"),
        ("server.bind", None, "{{config.docker.interface}}"),
        ("server.token", None, ""),
        ("server.memory", None, "{{server.build.memory}}"),
        ("server.name", None, "{{server.environment.SERVER_NAME}}"),
        ("server.mode", "regex:^(easy|normal)$", "hard"),
        ("server.mode", "casual", "{{server.allocations.default.port}}"),
    ]
    assert (
        "{{config.node.token}} emptied: only {{config.docker.interface}} is offered (the "
        "agent's own settings never are)"
    ) in item(result, "config.files.config/game.toml", "changed")
    assert blueprint.startup_done == ["Server ready", r"regex:^Listening on \d+"]
    assert blueprint.stop.model_dump() == {"type": "signal", "value": "SIGTERM"}


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("^C", {"type": "signal", "value": "SIGINT"}),
        ("^c", {"type": "signal", "value": "SIGINT"}),
        ("^^C", {"type": "signal", "value": "SIGINT"}),
        ("^SIGTERM", {"type": "signal", "value": "SIGTERM"}),
        ("^TERM", {"type": "signal", "value": "SIGTERM"}),
        ("SIGQUIT", {"type": "signal", "value": "SIGQUIT"}),
        ("^X", {"type": "signal", "value": "SIGKILL"}),
        ("stop 10 stopping server", {"type": "command", "value": "stop 10 stopping server"}),
        ("", {"type": "signal", "value": "SIGTERM"}),
    ],
)
def test_stop_values(stop: str, expected: dict[str, str]) -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    egg["config"]["stop"] = stop
    assert blueprint_of(map_egg(egg)).stop.model_dump() == expected


@pytest.mark.parametrize(
    ("startup", "shell"),
    [
        ("java -jar {{SERVER_JARFILE}}", False),
        ('./srv --name "a b"', False),
        ("./srv && echo done", True),
        ("./srv; ./other", True),
        ("./srv | tee log", True),
        ("./srv --port $PORT", True),
        ("./srv $(cat args)", True),
        ("./srv > out.log", True),
        ("if [ -f x ]; then ./srv; fi", True),
        ("./srv 'unbalanced", True),
    ],
)
def test_shell_syntax_makes_the_image_run_the_command(startup: str, shell: bool) -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    egg["startup"] = startup
    assert blueprint_of(map_egg(egg)).image_command is shell


def test_an_unknown_version_and_a_missing_startup_are_refused() -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    unknown = copy.deepcopy(egg)
    unknown["meta"]["version"] = "PTDL_v9"
    assert map_egg(unknown).report.refusals[0].field == "meta.version"
    del egg["startup"]
    assert map_egg(egg).report.refusals == [
        ReportItem("startup", "refused", "the egg has no startup command")
    ]


def test_a_default_that_breaks_its_own_rules_is_emptied() -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    (jar_variable,) = [v for v in egg["variables"] if v["env_variable"] == "SERVER_JARFILE"]
    jar_variable["default_value"] = "not-a-jar"
    result = map_egg(egg)
    jar = next(v for v in blueprint_of(result).variables if v.env == "SERVER_JARFILE")
    assert jar.default == ""
    assert "breaks the egg's own rules" in item(result, "variables.SERVER_JARFILE", "changed")[0]


def test_patterns_that_would_blow_up_when_compiled_are_reported_never_compiled() -> None:
    # The regex package expands nested counted repeats when it compiles (23 GB for this
    # variable rule): an egg's patterns are weighed first.
    egg = load("ptdl-v2-minecraft-paper.json")
    (jar_variable,) = [v for v in egg["variables"] if v["env_variable"] == "SERVER_JARFILE"]
    jar_variable["rules"] = "required|regex:/^(?:(?:x{65535}){65535})$/"
    started = time.process_time()
    result = map_egg(egg, accept_unknown_rules=True)
    assert time.process_time() - started < 1
    assert item(result, "variables.SERVER_JARFILE.rules", "changed")[0] == (
        "regex:/^(?:(?:x{65535}){65535})$/: Python cannot compile the pattern: too complex to "
        "compile: the repeat {65535} is above 1000"
    )
    jar = next(v for v in blueprint_of(result).variables if v.env == "SERVER_JARFILE")
    assert jar.regex is None
    # A config-file condition: refused at import, never first met by a node at a start.
    egg = load("ptdl-v2-minecraft-paper.json")
    files = json.loads(egg["config"]["files"])
    files["server.properties"]["find"]["motd"] = {"regex:^(?:a{2}){5000}$": "x"}
    egg["config"]["files"] = json.dumps(files)
    started = time.process_time()
    result = map_egg(egg)
    assert time.process_time() - started < 1
    assert result.blueprint is None
    assert result.report.refusals == [
        ReportItem(
            "config_files.0.replace.3.if_value",
            "refused",
            "Value error, regex:'^(?:a{2}){5000}$' cannot be used: too complex to compile: "
            "the repeat {5000} is above 1000",
        )
    ]


@pytest.mark.parametrize("name", EGG_FILES)
@pytest.mark.parametrize("form", ["ptdl_v2", "plcn_v3"])
def test_export_then_import_gives_the_same_blueprint(name: str, form: str) -> None:
    original = mapped(name, accept_unknown_rules=True)
    exported = export_egg(blueprint_of(original), original.egg_uuid, form)  # type: ignore[arg-type]
    assert exported["meta"]["version"] == form.upper().replace("_V", "_v")
    # Every test egg's blueprint is said in the egg's own words: no extension needed.
    assert EXTENSION not in exported
    (egg,) = read_eggs(json.dumps(exported).encode(), "json")
    again = map_egg(egg, accept_unknown_rules=True)
    assert again.blueprint == original.blueprint
    assert again.egg_uuid == original.egg_uuid


def test_what_an_egg_cannot_say_travels_in_the_extension() -> None:
    blueprint = blueprint_of(mapped("ptdl-v2-openttd.json")).model_copy(
        update={"read_only_root": False}
    )
    exported = export_egg(blueprint, None, "ptdl_v2")
    assert exported[EXTENSION] == {"read_only_root": False}
    (egg,) = read_eggs(json.dumps(exported).encode(), "json")
    # A writable root loosens what the egg says: only with the administrator's flag.
    assert map_egg(egg).report.refusals[0].field == f"{EXTENSION}.read_only_root"
    assert map_egg(egg, accept_extension=True).blueprint == blueprint
    pterodactyl = json.loads(exported["config"]["files"])
    assert pterodactyl["openttd.cfg"]["find"]["network.server_port"] == (
        "{{server.build.default.port}}"
    )


@pytest.mark.parametrize("name", ["ptdl-v2-7-days-to-die.json", "ptdl-v2-minecraft-paper.json"])
def test_an_eggs_installer_gets_a_writable_root_of_its_own(name: str) -> None:
    # Eggs' scripts install packages and tools (apt-get, curl -o /usr/local/bin/…, pip):
    # Wings gives them a writable root, and the throwaway copy of the image is theirs.
    result = mapped(name, accept_unknown_rules=True)
    blueprint = blueprint_of(result)
    assert blueprint.install is not None
    assert blueprint.install.writable_root
    # The game's root stays read-only.
    assert blueprint.read_only_root
    (said,) = item(result, "scripts.installation", "changed")
    assert "a writable root of its own" in said


@pytest.mark.parametrize("form", ["ptdl_v2", "plcn_v3"])
def test_the_newer_rules_export_in_laravels_words(form: str) -> None:
    """digits_between, gt, not_in, ends_with and the formats come back without the
    extension: other panels enforce them too."""
    egg = load("ptdl-v2-openttd.json")
    rules = [
        "required|numeric|digits_between:1,3",
        "nullable|numeric|gt:0.5",
        "required|string|not_in:anonymous|ends_with:==,=",
        "required|alpha_num|between:1,6",
        "nullable|ipv4",
    ]
    template = egg["variables"][0]
    egg["variables"] = [
        {**template, "env_variable": f"V{n}", "default_value": "", "rules": rule}
        for n, rule in enumerate(rules)
    ]
    egg["startup"] = "./openttd"
    original = map_egg(egg)
    exported = export_egg(blueprint_of(original), None, form)  # type: ignore[arg-type]
    assert EXTENSION not in exported
    (again,) = read_eggs(json.dumps(exported).encode(), "json")
    assert map_egg(again).blueprint == original.blueprint
    written = [v["rules"] for v in exported["variables"]]
    if form == "plcn_v3":
        written = ["|".join(r) for r in written]
    assert written == [
        "required|numeric|digits_between:1,3",
        "nullable|numeric|gt:0.5",
        "required|string|not_in:anonymous|ends_with:==,=",
        "required|string|min:1|max:6|alpha_num",
        "nullable|string|ipv4",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("read_only_root", False),
        ("image_command", True),
        ("startup", "curl -s https://example.invalid/x | sh"),
        (
            "install",
            {"image": "alpine:3.20", "entrypoint": "/bin/sh", "script": "curl x | sh"},
        ),
        ("file_denylist", []),
        (
            "config_files",
            [{"path": "a.txt", "parser": "file", "replace": [{"match": "a", "value": "b"}]}],
        ),
        ("variables", []),
    ],
)
def test_an_extension_that_loosens_the_egg_is_refused_without_the_flag(
    key: str, value: Any
) -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    egg["file_denylist"] = ["*.jar"]
    egg[EXTENSION] = {key: value}
    refused = map_egg(egg, accept_unknown_rules=True)
    assert refused.blueprint is None
    (why,) = item(refused, f"{EXTENSION}.{key}", "refused")
    assert "accept_extension=true" in why
    assert json.dumps(value)[:40] in why


def test_an_accepted_extension_is_reported_as_changed_and_the_stale_items_go() -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    plain = map_egg(egg, accept_unknown_rules=True)
    assert item(plain, "scripts.installation", "changed")
    install = {"image": "alpine:3.20", "entrypoint": "/bin/sh", "script": "curl x | sh"}
    startup = "java -jar other.jar"
    egg[EXTENSION] = {"install": install, "startup": startup, "read_only_root": False}
    result = map_egg(egg, accept_unknown_rules=True, accept_extension=True)
    blueprint = blueprint_of(result)
    assert blueprint.startup == startup
    assert blueprint.install is not None
    assert blueprint.install.script == "curl x | sh"
    assert not blueprint.read_only_root
    # What described the egg's own installer and startup is gone; each override says its value.
    fields = {i.field for i in result.report.items}
    assert not {f for f in fields if f.startswith(("scripts.installation", "startup"))}
    (said,) = item(result, f"{EXTENSION}.install", "changed")
    assert '"curl x | sh"' in said
    assert item(result, f"{EXTENSION}.startup", "changed") == [
        f"StellarStack's own value, set over the egg's: {json.dumps(startup)}"
    ]
    assert item(result, f"{EXTENSION}.read_only_root", "changed")
    assert not [i for i in result.report.items if i.outcome == "mapped" and EXTENSION in i.field]


def test_an_extension_that_tightens_or_only_renames_needs_no_flag() -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    egg["file_denylist"] = ["*.jar"]
    egg[EXTENSION] = {
        "read_only_root": True,
        "image_command": False,
        "file_denylist": ["*.jar", "secrets/"],
        "description": "ours",
    }
    result = map_egg(egg, accept_unknown_rules=True)
    blueprint = blueprint_of(result)
    assert blueprint.file_denylist == ["*.jar", "secrets/"]
    assert blueprint.description == "ours"
    assert item(result, f"{EXTENSION}.description", "changed") == [
        "StellarStack's own value, set over the egg's: \"ours\""
    ]
    assert not item(result, "file_denylist", "mapped")


def test_a_stop_timeout_is_30_from_an_egg_and_travels_in_the_extension() -> None:
    imported = blueprint_of(mapped("ptdl-v2-openttd.json"))
    assert imported.stop_timeout_seconds == 30
    patient = imported.model_copy(update={"stop_timeout_seconds": 120})
    exported = export_egg(patient, None, "plcn_v3")
    assert exported[EXTENSION] == {"stop_timeout_seconds": 120}
    (egg,) = read_eggs(json.dumps(exported).encode(), "json")
    # Waiting longer for a game to save loosens nothing: no flag needed.
    result = map_egg(egg)
    assert result.blueprint == patient
    assert item(result, f"{EXTENSION}.stop_timeout_seconds", "changed") == [
        "StellarStack's own value, set over the egg's: 120"
    ]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../../etc/passwd", "'..' is not a valid file name"),
        ("config/../../outside.cfg", "'..' is not a valid file name"),
        ("/", "the path names the volume root, not a file"),
    ],
)
def test_a_config_file_outside_the_volume_is_refused_at_import(path: str, why: str) -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    egg["config"]["files"] = json.dumps({path: {"parser": "file", "find": {"a": "b"}}})
    result = map_egg(egg)
    assert result.blueprint is None
    assert item(result, f"config.files.{path}", "refused") == [
        f"not a path inside the server's files: {why}"
    ]


def test_an_absolute_config_file_path_is_read_inside_the_volume() -> None:
    egg = load("ptdl-v2-minecraft-paper.json")
    files = json.loads(egg["config"]["files"])
    egg["config"]["files"] = json.dumps({"/server.properties": files["server.properties"]})
    result = map_egg(egg)
    (config,) = blueprint_of(result).config_files
    assert config.path == "/server.properties"
    assert "an absolute path is read inside the server's files" in item(
        result, "config.files./server.properties", "changed"
    )


def test_a_blueprint_with_a_config_file_outside_the_volume_is_refused() -> None:
    blueprint = blueprint_of(mapped("ptdl-v2-minecraft-paper.json")).model_dump(mode="json")
    blueprint["config_files"][0]["path"] = "../server.properties"
    with pytest.raises(ValidationError) as caught:
        BlueprintCreate.model_validate(blueprint)
    (error,) = caught.value.errors()
    assert error["loc"] == ("config_files",)
    assert error["msg"] == (
        "Value error, config file 0 ('../server.properties'): '..' is not a valid file name"
    )


def test_an_image_command_egg_warns_of_each_value_users_may_edit() -> None:
    result = mapped("ptdl-v2-7-days-to-die.json")
    blueprint = blueprint_of(result)
    assert blueprint.image_command
    editable = {v.env: v for v in blueprint.variables if v.user_editable}
    warned = {i.field for i in result.report.items if i.outcome == "warning"}
    assert warned == {
        "variables.SRCDS_BETAID",
        "variables.PASSWORD",
        "variables.TELNET_PORT",
        "variables.SERVER_DISABLED_NETWORK_PROTOCOLS",
    }
    # Numbers, booleans and plain options cannot carry shell syntax: no warning.
    assert editable["GAME_DIFFICULTY"].type == "integer"
    assert editable["AUTO_UPDATE"].type == "boolean"
    (said,) = item(result, "variables.PASSWORD", "warning")
    assert "evaluates it twice" in said
    assert "'x; cmd'" in said
    # A blueprint split into arguments never gives a value to a shell: no warning.
    paper = mapped("ptdl-v2-minecraft-paper.json")
    assert not [i for i in paper.report.items if i.outcome == "warning"]
