"""Every key of instellar.yml reaches the model: each test fails if its key is ignored."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pakman.config.model import AppConfig, AppType, Dependency, Stop, thaw
from pakman.config.schema import validate
from pakman.config.source import load_text
from pakman.errors import ConfigError, Diagnostic

BASE: dict[str, Any] = {
    "dependencies": {"build": [], "runtime": []},
    "stack": "alpine/3.20",
    "build": {"command": "make", "destinations": ["dist"]},
    "run": {
        "name": "app",
        "services": [{"name": "web", "binary": "app", "start": {"call": "serve"}}],
    },
}


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def load(patch: dict[str, Any], *, strict: bool = False) -> tuple[AppConfig, list[Diagnostic]]:
    text = yaml.safe_dump(merged(BASE, patch), sort_keys=False)
    return validate(load_text(text, "instellar.yml"), file=Path("app/instellar.yml"), strict=strict)


def app(patch: dict[str, Any]) -> AppConfig:
    return load(patch)[0]


def errors(patch: dict[str, Any], *, strict: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(patch, strict=strict)
    return [f"{d.path}: {d.message}" for d in exc.value.errors]


KEY_CASES: list[tuple[str, dict[str, Any], Callable[[AppConfig], Any], Any]] = [
    (
        "dependencies.build",
        {"dependencies": {"build": ["nodejs>=20", "npm"]}},
        lambda a: a.dependencies.build,
        (Dependency("nodejs", ">=20"), Dependency("npm")),
    ),
    (
        "dependencies.runtime",
        {"dependencies": {"runtime": ["so:libc.musl-x86_64.so.1", "!bad", "app-openrc"]}},
        lambda a: [str(d) for d in a.dependencies.runtime],
        ["so:libc.musl-x86_64.so.1", "!bad", "app-openrc"],
    ),
    (
        "dependencies.runtime conflict",
        {"dependencies": {"runtime": ["!bad"]}},
        lambda a: a.dependencies.runtime[0].conflict,
        True,
    ),
    ("dependencies.trace", {"dependencies": {"trace": True}}, lambda a: a.dependencies.trace, True),
    ("stack", {"stack": "alpine/3.18"}, lambda a: (a.stack, a.branch), ("alpine/3.18", "v3.18")),
    ("stack edge", {"stack": "alpine/edge"}, lambda a: a.branch, "edge"),
    ("type static", {"type": "static", "run": None}, lambda a: a.type, AppType.STATIC),
    ("type custom", {"type": "custom", "package": "true"}, lambda a: a.type, AppType.CUSTOM),
    ("type default", {"type": "default"}, lambda a: a.type, AppType.DEFAULT),
    (
        "build.command",
        {"build": {"command": "npm run build\n"}},
        lambda a: a.build.command,
        "npm run build\n",
    ),
    (
        "build.destinations",
        {"build": {"destinations": ["*", ".bundle", "./out/", "rel/app/*"]}},
        lambda a: a.build.destinations,
        ("*", ".bundle", "out", "rel/app/*"),
    ),
    (
        "build.destination string",
        {"build": {"destinations": None, "destination": "dist"}},
        lambda a: a.build.destinations,
        ("dist/*",),
    ),
    (
        "build.destination list",
        {"build": {"destinations": None, "destination": ["a", "b"]}},
        lambda a: a.build.destinations,
        ("a", "b"),
    ),
    (
        "build.strip_binary",
        {"build": {"strip_binary": False}},
        lambda a: a.build.strip_binary,
        False,
    ),
    ("run.name", {"run": {"name": "other"}}, lambda a: a.run and a.run.name, "other"),
    (
        "run.services[].name",
        {"run": {"services": [{"name": "good-job", "binary": "b", "start": {"call": "x"}}]}},
        lambda a: a.run and a.run.services[0].name,
        "good-job",
    ),
    (
        "run.services[].binary",
        {"run": {"services": [{"name": "w", "binary": "rails", "start": {"call": "x"}}]}},
        lambda a: a.run and a.run.services[0].binary,
        "rails",
    ),
    (
        "run.services[].path",
        {
            "run": {
                "services": [
                    {"name": "w", "binary": "b", "path": "/usr/sbin/", "start": {"call": "x"}}
                ]
            }
        },
        lambda a: a.run and a.run.services[0].path,
        "/usr/sbin",
    ),
    (
        "run.services[].start.call",
        {
            "run": {
                "services": [{"name": "w", "binary": "b", "start": {"call": "exec good_job start"}}]
            }
        },
        lambda a: a.run and a.run.services[0].start,
        "exec good_job start",
    ),
    (
        "run.services[].stop.call",
        {
            "run": {
                "services": [
                    {"name": "w", "binary": "b", "start": {"call": "x"}, "stop": {"call": "stop"}}
                ]
            }
        },
        lambda a: a.run and a.run.services[0].stop,
        Stop(call="stop"),
    ),
    (
        "run.services[].stop.kill",
        {
            "run": {
                "services": [
                    {
                        "name": "w",
                        "binary": "b",
                        "start": {"call": "x"},
                        "stop": {"kill": True, "pid_path": "tmp/pids/server.pid"},
                    }
                ]
            }
        },
        lambda a: a.run and a.run.services[0].stop,
        Stop(kill=True, pid_path="tmp/pids/server.pid"),
    ),
    (
        "run.services order",
        {
            "run": {
                "services": [
                    {"name": "web", "binary": "b", "start": {"call": "s"}},
                    {"name": "worker", "binary": "b", "start": {"call": "w"}},
                ]
            }
        },
        lambda a: a.run and [s.name for s in a.run.services],
        ["web", "worker"],
    ),
    (
        "run.commands",
        {
            "run": {
                "commands": [
                    {
                        "name": "logs",
                        "binary": "tail",
                        "path": "/usr/bin",
                        "call": "-f -n 100 /var/log/app/current",
                    }
                ]
            }
        },
        lambda a: a.run and a.run.commands[0],
        __import__("pakman.config.model", fromlist=["Command"]).Command(
            "logs", "tail", "-f -n 100 /var/log/app/current", "/usr/bin"
        ),
    ),
    (
        "architectures",
        {"architectures": ["x86_64", "aarch64"]},
        lambda a: a.architectures,
        ("x86_64", "aarch64"),
    ),
    ("source", {"source": "extra.conf"}, lambda a: a.source, "extra.conf"),
    (
        "package",
        {"package": 'install -Dm755 bin/x "$pkgdir"/usr/bin/x'},
        lambda a: a.package,
        'install -Dm755 bin/x "$pkgdir"/usr/bin/x',
    ),
    (
        "sizes",
        {"sizes": [{"name": "medium", "allocation": {"cpu": 1, "memory": 1}}]},
        lambda a: thaw(a.platform["sizes"]),
        [{"name": "medium", "allocation": {"cpu": 1, "memory": 1}}],
    ),
    (
        "plans",
        {"plans": [{"name": "basic", "layers": [{"channel_slug": "develop"}]}]},
        lambda a: thaw(a.platform["plans"]),
        [{"name": "basic", "layers": [{"channel_slug": "develop"}]}],
    ),
    (
        "page",
        {"page": {"title": "SomeApp", "slogan": "x"}},
        lambda a: thaw(a.platform["page"]),
        {"title": "SomeApp", "slogan": "x"},
    ),
    (
        "orchestration",
        {"orchestration": {"placement": "spread"}},
        lambda a: thaw(a.platform["orchestration"]),
        {"placement": "spread"},
    ),
]
for hook in (
    "pre-install",
    "post-install",
    "pre-upgrade",
    "post-upgrade",
    "pre-deinstall",
    "post-deinstall",
):
    KEY_CASES.append(
        (
            f"hook.{hook}",
            {"hook": {hook: f"echo {hook}\n"}},
            lambda a, h=hook: a.hooks.get(h),
            f"echo {hook}\n",
        )
    )


@pytest.mark.parametrize(
    ("patch", "get", "expected"), [c[1:] for c in KEY_CASES], ids=[c[0] for c in KEY_CASES]
)
def test_key_reaches_the_model(
    patch: dict[str, Any], get: Callable[[AppConfig], Any], expected: Any
) -> None:
    assert get(app(patch)) == expected


def test_a_repeated_architecture_is_built_once_with_a_warning() -> None:
    config, warnings = load({"architectures": ["x86_64", "aarch64", "x86_64"]})
    assert config.architectures == ("x86_64", "aarch64")
    assert [f"{w.path}: {w.message}" for w in warnings] == [
        "architectures[2]: 'x86_64' is listed twice (also item [0])"
    ]


def test_defaults() -> None:
    config = app({})
    assert config.type is AppType.DEFAULT
    assert config.architectures == ("x86_64",)
    assert config.dependencies.trace is False
    assert config.build.strip_binary is True
    assert config.hooks == {}
    assert config.source is None and config.package is None


def test_missing_lists_are_empty() -> None:
    config = app({"dependencies": {"build": None, "runtime": None}})
    assert config.dependencies.build == () and config.dependencies.runtime == ()


def test_missing_stack_warns_and_uses_default() -> None:
    config, warnings = load({"stack": None})
    assert config.stack == "alpine/3.22"
    assert [w.message for w in warnings] == ["no `stack` given; using alpine/3.22"]


def test_kits_are_typed_and_kept_verbatim() -> None:
    cors = '[\n  {"AllowedOrigins": [\n    {{- installation.origins -}}\n  ]}\n]\n'
    kit = {
        "name": "web",
        "description": "web service",
        "main": True,
        "ports": [{"name": "web", "target": 3000, "main": True}],
        "variables": [
            {"key": "RAILS_ENV", "default_value": "production"},
            {"key": "AWS_S3", "driver": "bucket/aws-s3", "driver_options": {"cors": cors}},
        ],
        "forks": [
            {
                "name": "good-job",
                "description": "GoodJob worker",
                "variables": [{"key": "SERVICE_MODE", "default_value": "web"}],
            }
        ],
    }
    config = app({"kits": [kit]})
    (parsed,) = config.kits
    assert (parsed.name, parsed.description, parsed.main) == ("web", "web service", True)
    assert (parsed.ports[0].name, parsed.ports[0].target, parsed.ports[0].main) == (
        "web",
        3000,
        True,
    )
    assert parsed.variables[0].default_value == "production"
    assert parsed.variables[1].driver == "bucket/aws-s3"
    assert parsed.variables[1].driver_options["cors"] == cors  # placeholders untouched
    assert parsed.forks[0].name == "good-job"
    assert parsed.forks[0].variables[0].key == "SERVICE_MODE"
    assert thaw(config.platform["kits"]) == [kit]


def test_model_is_frozen() -> None:
    config = app({})
    with pytest.raises(AttributeError):
        config.stack = "alpine/3.1"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.hooks["post-install"] = "x"  # type: ignore[index]


# -- the older shapes -------------------------------------------------------


def test_legacy_destination_warns_with_modern_form() -> None:
    config, warnings = load(
        {"build": {"destinations": None, "destination": "_build/prod/rel/app/*"}}
    )
    assert config.build.destinations == ("_build/prod/rel/app/*",)
    (warning,) = warnings
    assert warning.path == "build.destination"
    assert (
        warning.message
        == "`destination` is deprecated; write instead:\ndestinations:\n- _build/prod/rel/app/*"
    )


LEGACY_RUN = {
    "name": "rdio",
    "binary": "rdio",
    "start": {"call": "start"},
    "stop": {"call": "stop"},
    "command": {
        "call": "eval",
        "variations": {"migrate": "Rdio.Release.Tasks.migrate", "seed": "Rdio.Seed.run"},
    },
    "services": None,  # drop the base config's modern services
}


def test_legacy_run_becomes_services_and_commands() -> None:
    config, warnings = load({"run": LEGACY_RUN})
    assert config.run is not None
    (service,) = config.run.services
    assert (service.name, service.binary, service.start, service.stop) == (
        "web",
        "rdio",
        "start",
        Stop(call="stop"),
    )
    assert [(c.name, c.binary, c.call) for c in config.run.commands] == [
        ("migrate", "rdio", "eval Rdio.Release.Tasks.migrate"),
        ("seed", "rdio", "eval Rdio.Seed.run"),
    ]
    (warning,) = warnings
    assert warning.path == "run"
    modern = yaml.safe_load(warning.message.split("write instead:\n", 1)[1])
    assert modern["run"]["services"] == [
        {"name": "web", "binary": "rdio", "start": {"call": "start"}, "stop": {"call": "stop"}}
    ]
    assert modern["run"]["commands"][0] == {
        "name": "migrate",
        "binary": "rdio",
        "call": "eval Rdio.Release.Tasks.migrate",
    }


def test_legacy_process_and_binary_defaulting_to_name() -> None:
    config, _ = load(
        {"run": {"name": "worker", "process": {"call": "run --fast"}, "services": None}}
    )
    assert config.run is not None
    assert (config.run.services[0].binary, config.run.services[0].start) == ("worker", "run --fast")


def test_legacy_beside_modern_is_ignored_with_a_warning() -> None:
    config, warnings = load({"run": {"binary": "x", "start": {"call": "y"}}})
    assert config.run is not None
    assert [s.binary for s in config.run.services] == ["app"]  # the modern services of BASE
    assert [(w.path, w.message.split(":")[0]) for w in warnings] == [
        ("run.binary", "`binary`, `start` are ignored")
    ]


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("_build/prod/rel/app", "_build/prod/rel/app/*"),
        ("./_build/prod/rel/app/", "_build/prod/rel/app/*"),
        (".", "*"),
        ("./", "*"),
        ("_build/prod/rel/app/*", "_build/prod/rel/app/*"),
        ("dist/[a-z]*", "dist/[a-z]*"),
    ],
)
def test_legacy_destination_copies_the_folders_contents(destination: str, expected: str) -> None:
    """The original moved `<destination>/*` into /var/lib/<name>/ (2021-2023)."""
    config, warnings = load({"build": {"destinations": None, "destination": destination}})
    assert config.build.destinations == (expected,)
    (warning,) = warnings
    modern = yaml.safe_load(warning.message.split(":\n", 1)[1])
    assert modern == {"destinations": [expected]}


def test_legacy_destination_beside_destinations_is_ignored() -> None:
    config, warnings = load({"build": {"destinations": ["dist"], "destination": "other"}})
    assert config.build.destinations == ("dist",)
    (warning,) = warnings
    assert warning.path == "build.destination" and warning.message.startswith("is ignored")


def test_legacy_run_with_only_a_command_defines_commands_and_no_service() -> None:
    run = {
        "name": "rdio",
        "command": {"call": "eval", "variations": {"migrate": "Rdio.Release.Tasks.migrate"}},
        "services": None,
    }
    config, warnings = load({"run": run})
    assert config.run is not None and config.run.services == ()
    assert [(c.name, c.binary, c.call) for c in config.run.commands] == [
        ("migrate", "rdio", "eval Rdio.Release.Tasks.migrate")
    ]
    assert config.service_files == ("initd", "environment", "env-exec", "profile")
    assert [w.message.split(";")[0].split(":")[0] for w in warnings] == [
        "this `run` shape (binary/start/process/command directly under run) is deprecated",
        "defines commands but no service",
    ]
    custom, warnings = load({"run": run, "type": "custom", "package": "true"})
    assert custom.run is not None and custom.service_files == ()
    assert warnings[-1].message.startswith("services and commands are not used for `type: custom`")


def test_legacy_variation_names_are_checked() -> None:
    found = errors(
        {
            "run": {
                "name": "a",
                "binary": "a",
                "start": {"call": "s"},
                "command": {"call": "x", "variations": {"db-migrate": "y"}},
                "services": None,
            }
        }
    )
    assert found[0].startswith("run.command.variations.db-migrate: 'db-migrate' is not allowed")


# -- rules across keys -------------------------------------------------------


@pytest.mark.parametrize(
    "run", [None, {"name": "app", "services": None}, {"name": "app", "services": []}]
)
def test_default_type_without_services_runs_nothing_with_a_warning(run: Any) -> None:
    config, warnings = load({"run": run})
    assert config.service_files == ()
    assert [w.message.split(":")[0] for w in warnings] == ["runs no service"]


def test_custom_needs_package() -> None:
    assert errors({"type": "custom"}) == [
        "type: `type: custom` needs a `package` body: the shell that installs files into $pkgdir"
    ]


def test_static_ignores_run_with_warning() -> None:
    _, warnings = load({"type": "static"})
    assert [w.message for w in warnings] == [
        "is ignored for `type: static` (nginx serves the site)"
    ]


def test_duplicate_service_and_command_names_warn() -> None:
    svc = {"name": "web", "binary": "b", "start": {"call": "x"}}
    cmd = {"name": "migrate", "binary": "b"}
    _, warnings = load({"run": {"services": [svc, svc], "commands": [cmd, cmd]}})
    assert [f"{w.path}: {w.message}" for w in warnings] == [
        "run.services[1].name: `web` is defined twice: SERVICE_MODE=web starts "
        "run.services[0], never this one",
        "run.commands[1].name: `migrate` is defined twice: this definition replaces "
        "run.commands[0]",
    ]


@pytest.mark.parametrize("name", ["start", "stop", "status", "depend", "exit", "cd"])
def test_reserved_command_names(name: str) -> None:
    assert errors({"run": {"commands": [{"name": name, "binary": "b"}]}}) == [
        f"run.commands[0].name: `{name}` is reserved by OpenRC or the shell; choose another name"
    ]


def test_service_mode_lint() -> None:
    kit = {
        "name": "web",
        "forks": [{"name": "w", "variables": [{"key": "SERVICE_MODE", "default_value": "wrker"}]}],
    }
    _, warnings = load({"kits": [kit]})
    assert warnings[0].path == "kits[0].forks[0].variables[0].default_value"
    assert "names no service" in warnings[0].message


def test_unknown_keys_warn_or_fail_under_strict() -> None:
    _, warnings = load({"kits": [{"name": "web", "descrption": "x"}]})
    assert [w.message for w in warnings] == [
        "unknown key `descrption`; did you mean `description`?"
    ]
    assert errors({"kits": [{"name": "web", "descrption": "x"}]}, strict=True) == [
        "kits[0].descrption: unknown key `descrption`; did you mean `description`?"
    ]


# -- names and values that reach paths or shells ----------------------------

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"run": {"name": "a/b"}}, "run.name"),
    ({"run": {"name": "../x"}}, "run.name"),
    ({"run": {"name": "Upper"}}, "run.name"),
    (
        {"run": {"services": [{"name": "web;rm", "binary": "b", "start": {"call": "x"}}]}},
        "run.services[0].name",
    ),
    (
        {"run": {"services": [{"name": "w", "binary": "/bin/rails", "start": {"call": "x"}}]}},
        "run.services[0].binary",
    ),
    (
        {"run": {"services": [{"name": "w", "binary": "x/../rails", "start": {"call": "x"}}]}},
        "run.services[0].binary",
    ),
    (
        {"run": {"services": [{"name": "w", "binary": "..", "start": {"call": "x"}}]}},
        "run.services[0].binary",
    ),
    (
        {
            "run": {
                "services": [
                    {"name": "w", "binary": "b", "path": "../usr/bin", "start": {"call": "x"}}
                ]
            }
        },
        "run.services[0].path",
    ),
    (
        {
            "run": {
                "services": [
                    {"name": "w", "binary": "b", "path": "/usr/../etc", "start": {"call": "x"}}
                ]
            }
        },
        "run.services[0].path",
    ),
    (
        {
            "run": {
                "services": [
                    {"name": "w", "binary": "b", "path": "/usr/$(x)", "start": {"call": "x"}}
                ]
            }
        },
        "run.services[0].path",
    ),
    (
        {"run": {"services": [{"name": "w", "binary": "b", "start": {"call": "a\nb"}}]}},
        "run.services[0].start.call",
    ),
    (
        {"run": {"services": [{"name": "w", "binary": "b", "start": {"call": "it's"}}]}},
        "run.services[0].start.call",
    ),
    ({"run": {"commands": [{"name": "db-migrate", "binary": "b"}]}}, "run.commands[0].name"),
    ({"run": {"commands": [{"name": "x`id`", "binary": "b"}]}}, "run.commands[0].name"),
    ({"build": {"destinations": ["/etc"]}}, "build.destinations[0]"),
    ({"build": {"destinations": ["a/../../b"]}}, "build.destinations[0]"),
    ({"build": {"destinations": ["a b"]}}, "build.destinations[0]"),
    ({"build": {"destinations": ["$(id)"]}}, "build.destinations[0]"),
    ({"build": {"destinations": ["./"]}}, "build.destinations[0]"),
    ({"architectures": ["amd64"]}, "architectures[0]"),
    ({"architectures": []}, "architectures"),
    ({"dependencies": {"runtime": ["nodejs >= 20"]}}, "dependencies.runtime[0]"),
    ({"dependencies": {"runtime": ["nodejs>=twenty"]}}, "dependencies.runtime[0]"),
    ({"dependencies": {"runtime": ["a;b"]}}, "dependencies.runtime[0]"),
    ({"stack": "ubuntu/22.04"}, "stack"),
    ({"hook": {"post_install": "x"}}, "hook.post_install"),
    ({"kits": [{"name": "web", "variables": [{"key": "MY-VAR"}]}]}, "kits[0].variables[0].key"),
    (
        {"kits": [{"name": "web", "ports": [{"name": "web", "target": 70000}]}]},
        "kits[0].ports[0].target",
    ),
]


@pytest.mark.parametrize(("patch", "path"), REFUSED, ids=[p for _, p in REFUSED])
def test_unsafe_or_invalid_values_are_refused(patch: dict[str, Any], path: str) -> None:
    found = errors(patch)
    assert [f.split(": ", 1)[0] for f in found] == [path]


def test_refusals_say_what_is_allowed() -> None:
    (message,) = errors({"run": {"name": "a/b"}})
    assert "lower-case letters, digits" in message


def test_the_model_keeps_where_each_value_is_written(tmp_path: Path) -> None:
    from pakman.workspace import datafile

    text = (
        "dependencies:\n  runtime: [busybox, jq]\n"
        "build:\n  command: make\n"
        "run:\n  name: app\n  services:\n"
        "    - name: web\n      binary: app\n      start:\n        call: serve --port 80\n"
    )
    document = load_text(text, "instellar.yml")
    config, _ = validate(document, file=tmp_path / "instellar.yml")
    call = ("run", "services", 0, "start", "call")
    assert config.where(call) == document.where(call) == (11, 15)
    assert config.where(("dependencies", "runtime", 1)) == (2, 22)
    assert config.where(("run", "services", 0, "no-such-key")) == document.where(call[:3])
    assert config.where(("nothing",)) == document.where(("nothing",)) == (1, 1)
    assert AppConfig(file=tmp_path).where(call) == (0, 0)  # a model made in code: no place
    diagnostic = config.diagnostic(call, "a message", warning=True)
    assert str(diagnostic) == (
        f"{tmp_path / 'instellar.yml'}:11:15: warning: run.services[0].start.call: a message"
    )
    # kept under .pakman/ with the model, and read back with it (the positions compare
    # apart from the model: a moved line changes no step)
    again = datafile.loads(datafile.dumps(config), AppConfig)
    assert again.positions == config.positions and again == config
