"""What setting a server's configuration files costs before each start.

Run ``python bench/config_apply.py`` (``--help`` for the options). No services are needed:
it copies the real-looking game files of the parser tests
(``tests/unit/node_agent/configs_data/``: Minecraft's ``server.properties``, BungeeCord's
``config.yml``, Velocity's ``velocity.toml``, an ARK ``GameUserSettings.ini``, 7 Days to Die's
``serverconfig.xml``, a JSON config, and ``velocity.toml`` again for the ``file`` parser)
into a temporary volume and applies a 20-rule blueprint to them (4 properties, 4 yaml with an
index and a ``servers.*.address`` regex, 3 toml, 3 ini, 3 xml, 2 json, 1 file) exactly as the
start path does: ``node_agent.configs.apply.apply_config_files`` in a worker thread
(``asyncio.to_thread``), every read and atomic write through the confined file layer. In
alternating rounds it measures

1. **apply, files changed**: the volume's files put back to their originals (untimed) first,
   so every file is parsed, edited and written (temporary file, fsync, rename);
2. **apply, nothing to change**: the rules applied again to files that already hold their
   values (parsed, nothing written: what most starts cost);
3. **baseline**: the same files read and written back unchanged through the same confined
   layer (``read_config`` + ``write_config``), in a worker thread, with no parsing and no rules.

Then, per parser, one rule on a file of about ``--big-kib`` KiB, to show what a large file
costs the start (the caps: 0.5 MiB for YAML, 1 MiB for TOML, 8 MiB for the others). It
prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.processes import percentile
from node_agent.configs.apply import apply_config_files
from node_agent.configs.placeholders import PlaceholderValues
from node_agent.configs.volume_io import read_config, write_config
from node_agent.files.confine import open_root
from shared.server_spec import ConfigFile, ServerSpec

DATA = Path(__file__).resolve().parents[1] / "tests" / "unit" / "node_agent" / "configs_data"
REGEX_ADDRESS = r"regex:^(127\.0\.0\.1|localhost)(:\d{1,5})?$"


def rule(match: str, value: str, if_value: str | None = None) -> dict[str, Any]:
    return {"match": match, "value": value, "if_value": if_value}


BLUEPRINT: list[dict[str, Any]] = [
    {
        "path": "server.properties",
        "parser": "properties",
        "replace": [
            rule("server-port", "{{server.allocations.default.port}}"),
            rule("server-ip", "0.0.0.0"),
            rule("max-players", "{{server.environment.MAX_PLAYERS}}"),
            rule("motd", "{{env.MOTD}}"),
        ],
    },
    {
        "path": "config.yml",
        "parser": "yaml",
        "replace": [
            rule("listeners[0].host", "0.0.0.0:{{server.build.default.port}}"),
            rule("listeners[0].max_players", "{{server.environment.MAX_PLAYERS}}"),
            rule("servers.*.address", "{{config.docker.interface}}$2", REGEX_ADDRESS),
            rule("ip_forward", "true"),
        ],
    },
    {
        "path": "velocity.toml",
        "parser": "toml",
        "replace": [
            rule("bind", "0.0.0.0:{{server.build.default.port}}"),
            rule("show-max-players", "{{env.MAX_PLAYERS}}"),
            rule("servers.*", "{{config.docker.interface}}$1", r"regex:^127\.0\.0\.1(:\d+)$"),
        ],
    },
    {
        "path": "GameUserSettings.ini",
        "parser": "ini",
        "replace": [
            rule("ServerSettings.MaxPlayers", "{{env.MAX_PLAYERS}}"),
            rule("SessionSettings.Port", "{{server.build.default.port}}"),
            rule("[/Script/Engine.GameSession].MaxPlayers", "{{env.MAX_PLAYERS}}"),
        ],
    },
    {
        "path": "serverconfig.xml",
        "parser": "xml",
        "replace": [
            rule("ServerSettings.property[@name='ServerPort']", "[value='{{env.SERVER_PORT}}']"),
            rule(
                "ServerSettings.property[@name='ServerMaxPlayerCount'].@value",
                "{{env.MAX_PLAYERS}}",
            ),
            rule("ServerSettings.property[@name='TelnetEnabled'].@value", "false", "true"),
        ],
    },
    {
        "path": "config.json",
        "parser": "json",
        "replace": [
            rule("server.port", "{{server.build.default.port}}"),
            rule("server.listeners.*.host", "0.0.0.0"),
        ],
    },
    {
        "path": "velocity-lines.toml",
        "parser": "file",
        "replace": [rule("bind = ", 'bind = "0.0.0.0:{{server.build.default.port}}"')],
    },
]
SOURCES = {
    "velocity-lines.toml": "velocity.toml",
}


def placeholder_values() -> PlaceholderValues:
    spec = ServerSpec.model_validate(
        {
            "uuid": str(uuid.uuid4()),
            "image": "stellar-test/busybox:latest",
            "memory_mib": 1024,
            "disk_mib": 1024,
            "environment": {"MAX_PLAYERS": "42", "MOTD": "Benchmark server"},
            "allocations": [{"ip": "127.0.0.1", "port": 30000}],
        }
    )
    return PlaceholderValues.of(spec, "172.18.0.1")


def put_originals(volume: Path, configs: list[ConfigFile]) -> None:
    for config in configs:
        shutil.copyfile(DATA / SOURCES.get(config.path, config.path), volume / config.path)


def baseline(volume: Path, configs: list[ConfigFile], owner: tuple[int, int]) -> None:
    """Read and write every file unchanged through the confined layer: the I/O alone."""
    root_fd = open_root(volume)
    try:
        for config in configs:
            parts = (config.path,)
            data = read_config(root_fd, parts)
            assert data is not None
            write_config(root_fd, parts, data, owner)
    finally:
        os.close(root_fd)


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await work()
    return (time.perf_counter() - start) * 1000


def big_file(parser: str, kib: int) -> tuple[bytes, dict[str, Any]]:
    """A file of about ``kib`` KiB for ``parser``, and one rule on its last key."""
    count = kib * 1024 // 40
    if parser == "properties":
        body = "".join(f"setting-number-{i}=value of setting {i:08d}\n" for i in range(count))
        return body.encode(), rule(f"setting-number-{count - 1}", "x")
    if parser == "yaml":
        body = "settings:\n" + "".join(
            f"  key{i}: value of setting {i:08d}\n" for i in range(count)
        )
        return body.encode(), rule(f"settings.key{count - 1}", "x")
    if parser == "toml":
        body = "[settings]\n" + "".join(
            f'key{i} = "value of setting {i:08d}"\n' for i in range(count)
        )
        return body.encode(), rule(f"settings.key{count - 1}", "x")
    if parser == "json":
        items = ",\n".join(f'  "key{i}": "value of setting {i:08d}"' for i in range(count))
        return ("{\n" + items + "\n}\n").encode(), rule(f"key{count - 1}", "x")
    if parser == "ini":
        body = "[Settings]\n" + "".join(f"Key{i}=value of setting {i:08d}\n" for i in range(count))
        return body.encode(), rule(f"Settings.Key{count - 1}", "x")
    if parser == "xml":
        items = "".join(f'  <property name="k{i}" value="{i:08d}"/>\n' for i in range(count // 2))
        return f"<Settings>\n{items}</Settings>\n".encode(), rule(
            f"Settings.property[@name='k{count // 2 - 1}'].@value", "x"
        )
    body = "".join(f"setting {i} = value {i:08d}\n" for i in range(count))
    return body.encode(), rule(f"setting {count - 1} =", "x")


def summary(name: str, values: list[float]) -> str:
    return (
        f"  {name:<44} mean {statistics.fmean(values):7.2f}  p50 {percentile(values, 50):7.2f}"
        f"  p99 {percentile(values, 99):7.2f} ms"
    )


async def run(args: argparse.Namespace, volume: Path) -> None:
    configs = [ConfigFile.model_validate(entry) for entry in BLUEPRINT]
    rules = sum(len(config.replace) for config in configs)
    values = placeholder_values()
    owner = (os.getuid(), os.getgid())
    changed: list[float] = []
    steady: list[float] = []
    plain: list[float] = []

    def apply() -> Awaitable[object]:
        return asyncio.to_thread(apply_config_files, volume, configs, values, owner)

    put_originals(volume, configs)
    outcomes = await asyncio.to_thread(apply_config_files, volume, configs, values, owner)
    assert all(outcome.outcome == "changed" for outcome in outcomes), outcomes
    assert not any(outcome.problems for outcome in outcomes), outcomes
    for _ in range(args.warmup):
        put_originals(volume, configs)
        await apply()
    for _ in range(args.rounds):
        put_originals(volume, configs)
        changed.append(await timed(apply))
        steady.append(await timed(apply))
        plain.append(await timed(lambda: asyncio.to_thread(baseline, volume, configs, owner)))

    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"{len(configs)} files, {rules} rules, {args.rounds} rounds "
        f"(after {args.warmup} warm-up), files on {volume}"
    )
    print(summary("apply, files changed (read+parse+write)", changed))
    print(summary("apply, nothing to change (read+parse)", steady))
    print(summary("baseline: read+write unchanged, no rules", plain))
    print(
        f"  apply costs {statistics.median(changed) / statistics.median(plain):.1f}x the "
        f"baseline's I/O (medians); {statistics.median(changed) / rules:.2f} ms per rule"
    )

    print(
        f"one rule on a file of about {args.big_kib} KiB, per parser (median of {args.big_rounds})"
    )
    for parser in ("properties", "ini", "file", "json", "xml", "toml", "yaml"):
        data, big_rule = big_file(parser, args.big_kib)
        config = ConfigFile.model_validate(
            {"path": f"big.{parser}", "parser": parser, "replace": [big_rule]}
        )
        times = []
        for _ in range(args.big_rounds):
            (volume / config.path).write_bytes(data)
            start = time.perf_counter()
            outcome = (
                await asyncio.to_thread(apply_config_files, volume, [config], values, owner)
            )[0]
            times.append((time.perf_counter() - start) * 1000)
        median = statistics.median(times)
        print(
            f"  {parser:<11} {len(data) / 1024:6.0f} KiB {median:9.1f} ms"
            f"  ({median / (len(data) / 2**20) / 1000:5.2f} s per MiB)"
            f"  ({outcome.outcome}{': ' + outcome.problems[0] if outcome.problems else ''})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds of each")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first")
    parser.add_argument("--big-kib", type=int, default=480, help="size of the big files")
    parser.add_argument("--big-rounds", type=int, default=3, help="rounds per big file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.big_kib < 1 or args.big_rounds < 1:
        print("--rounds, --big-kib and --big-rounds must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="stellar-config-bench-") as directory:
        asyncio.run(run(args, Path(directory)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
