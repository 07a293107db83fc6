"""Pipeline definitions: the stages that pipelines/*.yml declare, as data.

A pipeline is read once and checked with the same shape language as
instellar.yml (errors carry file, line and column). A stage marked
`generated-files: true` stands for one render stage per generated file that
render/files.py declares (`<name>-<kind>`, reading what the declaration
says). The graph compiler instantiates the stages per app and architecture.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pakman.config import rules
from pakman.config.model import AppConfig, AppType
from pakman.config.rules import Rule
from pakman.config.shape import Checker, Field, Fields, Flag, Items, Text
from pakman.errors import ConfigError, Diagnostic
from pakman.render import files
from pakman.render.files import SERVICE_FILES, GeneratedFile

Per = Literal["app", "arch", "repository"]
IDENTITY_FIELDS = (
    "organization",
    "name",
    "version",
    "release",
    "url",
    "license",
    "license_from",
    "description",
    "description_from",
)
_STAGE_NAME = Rule(r"^[a-z][a-z0-9-]*$", "lower-case letters, digits and '-'")
_AFTER = Rule(
    r"^[a-z][a-z0-9-]*\*?$",
    "a stage name, or the start of names followed by * (every earlier stage named so)",
)
_ACTION = Rule(
    r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$",
    "module:function, e.g. pakman.steps.build:run_build",
)

STAGE = Fields(
    {
        "name": Field(Text(rule=_STAGE_NAME), required=True),
        "description": Field(Text(rule=rules.ONE_LINE)),
        "per": Field(Text(enum=("app", "arch", "repository")), required=True),
        "each": Field(Text(enum=("hook",))),
        "build-on": Field(Text(enum=("alpine", "host"))),
        "types": Field(Items(Text(enum=tuple(t.value for t in AppType)), unique=True)),
        "service-file": Field(Text(enum=SERVICE_FILES)),
        # One stage per generated file (render/files.py), which says what each reads and writes.
        "generated-files": Field(Flag()),
        "after": Field(Items(Text(rule=_AFTER), unique=True)),
        "reads": Field(
            Fields(
                {
                    "config": Field(Items(Text(rule=rules.ONE_LINE), unique=True)),
                    "identity": Field(Items(Text(enum=IDENTITY_FIELDS), unique=True)),
                    "templates": Field(Items(Text(rule=rules.ONE_LINE), unique=True)),
                    "source": Field(Flag()),
                    "key": Field(Flag()),
                    "epoch": Field(Flag()),
                    "mirror": Field(Flag()),
                    "local": Field(Flag()),
                    "base": Field(Flag()),
                    "sandbox": Field(Flag()),
                    "git": Field(Flag()),
                }
            )
        ),
        "produces": Field(Items(Text(rule=rules.ONE_LINE), min_items=1)),
        "action": Field(Text(rule=_ACTION), required=True),
    },
    unknown="error",
)
PIPELINE = Fields({"stages": Field(Items(STAGE, min_items=1), required=True)}, unknown="error")


@dataclass(frozen=True)
class Reads:
    """What a stage reads; its steps' keys are made of exactly this."""

    config: tuple[str, ...] = ()
    identity: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    source: bool = False
    key: bool = False
    epoch: bool = False
    mirror: bool = False
    local: bool = False
    base: bool = False  # the build base set (settings.build_base_packages)
    sandbox: bool = False  # --build-on and --network, when building on alpine
    git: bool = False  # the commit and tags, for apps with build.git: true


@dataclass(frozen=True)
class Stage:
    name: str
    per: Per
    produces: tuple[str, ...]
    action: str
    description: str = ""
    each: str | None = None
    types: frozenset[AppType] | None = None  # None: every type
    after: tuple[str, ...] = ()
    reads: Reads = Reads()
    service_file: str | None = None  # only for apps that get this file (AppConfig.service_files)
    build_on: str | None = None  # only in builds on this (--build-on); None: in every build

    def applies_to(self, app: AppConfig | AppType) -> bool:
        """Whether an app (or, by type alone, every app of a type) has this stage."""
        app_type = app if isinstance(app, AppType) else app.type
        if self.types is not None and app_type not in self.types:
            return False
        return (
            self.service_file is None
            or isinstance(app, AppType)
            or self.service_file in app.service_files
        )


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def pipelines_dir() -> Path:
    """Where pipeline definitions are: inside the installed package, else the checkout."""
    package = Path(__file__).resolve().parents[1]  # pakman/
    packaged = package / "pipelines"
    return packaged if packaged.is_dir() else package.parent / "pipelines"


@functools.lru_cache(maxsize=8)
def load_pipeline(name: str = "default") -> Pipeline:
    """Read and check `pipelines/<name>.yml` (or a path to a .yml file)."""
    from pakman.config.source import load_file

    path = Path(name) if name.endswith((".yml", ".yaml")) else pipelines_dir() / f"{name}.yml"
    document = load_file(path)
    ctx = Checker(document, strict=True)
    if PIPELINE.check(document.data, (), ctx):
        _check_references(document.data["stages"], ctx)
    errors = [d for d in ctx.sorted() if d.severity == "error"]
    if errors:
        raise ConfigError(errors)
    stages: list[Stage] = []
    for raw in document.data["stages"]:
        stage = _stage(raw, _expand_after(raw.get("after") or (), stages))
        if raw.get("generated-files"):
            stages.extend(_generated_stage(stage, f) for f in files.GENERATED_FILES)
        else:
            stages.append(stage)
    return Pipeline(path.stem, tuple(stages))


def _generated_stage(family: Stage, generated: GeneratedFile) -> Stage:
    """The render stage of one generated file, as its declaration says."""
    return dataclasses.replace(
        family,
        name=_generated_name(family.name, generated),
        description=generated.description,
        produces=(f"{{work}}/render/{generated.file_name}",),
        # A file that runs the app: only default-type apps that get it.
        types=frozenset({AppType.DEFAULT}) if generated.runs else family.types,
        service_file=generated.kind if generated.runs else None,
        reads=Reads(
            config=generated.config,
            identity=generated.identity,
            templates=(generated.template,),
        ),
    )


def _generated_name(family: str, generated: GeneratedFile) -> str:
    return f"{family}-{generated.kind.lower()}"


def _expand_after(after: Sequence[str], earlier: Sequence[Stage]) -> tuple[str, ...]:
    """`after:` with each `prefix*` replaced by the earlier stages whose names begin so."""
    names: list[str] = []
    for entry in after:
        if entry.endswith("*"):
            names.extend(s.name for s in earlier if s.name.startswith(entry[:-1]))
        else:
            names.append(entry)
    return tuple(dict.fromkeys(names))


def _check_references(stages: list[dict[str, Any]], ctx: Checker) -> None:
    seen: dict[str, int] = {}
    for i, raw in enumerate(stages):
        name = str(raw["name"])
        if name in seen:
            ctx.error(("stages", i, "name"), f"stage `{name}` is defined twice")
        _check_family(raw, i, ctx)
        for j, upstream in enumerate(raw.get("after") or ()):
            if upstream.endswith("*"):
                if not any(s.startswith(upstream[:-1]) for s in seen):
                    ctx.error(
                        ("stages", i, "after", j),
                        f"`{upstream}` names no stage defined before `{name}`",
                    )
                continue
            if upstream not in seen:
                ctx.error(
                    ("stages", i, "after", j),
                    f"`{upstream}` is not a stage defined before `{name}` (stages come in order)"
                    + _cycle_through(stages, name, upstream),
                )
        seen[name] = i
        if raw.get("generated-files"):
            seen.update((_generated_name(name, f), i) for f in files.GENERATED_FILES)


# What render/files.py declares for each file of a `generated-files` stage.
_DECLARED = ("each", "types", "service-file", "reads", "produces")


def _check_family(raw: dict[str, Any], i: int, ctx: Checker) -> None:
    if not raw.get("generated-files"):
        if "produces" not in raw:
            ctx.error(("stages", i, "produces"), "required key is missing")
        return
    if raw.get("per") != "app":
        ctx.error(("stages", i, "per"), "a `generated-files` stage is `per: app`")
    for key in _DECLARED:
        if key in raw:
            ctx.error(
                ("stages", i, key),
                f"`{key}` of a `generated-files` stage comes from render/files.py",
            )


def _cycle_through(stages: list[dict[str, Any]], name: str, upstream: str) -> str:
    """`; a -> b -> a form a cycle` when `name` after `upstream` closes one, else ""."""
    import networkx as nx  # only for a pipeline already found wrong

    order: nx.DiGraph[str] = nx.DiGraph()
    order.add_edges_from(
        (str(u), str(raw["name"])) for raw in stages for u in raw.get("after") or ()
    )
    try:
        path = nx.shortest_path(order, name, upstream)
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return ""
    return f"; {' -> '.join([*path, name])} form a cycle"


def _stage(raw: dict[str, Any], after: tuple[str, ...]) -> Stage:
    reads = raw.get("reads") or {}
    assert isinstance(reads, dict)
    types = raw.get("types")
    return Stage(
        name=str(raw["name"]),
        per=raw["per"],
        produces=tuple(raw.get("produces") or ()),
        action=str(raw["action"]),
        description=str(raw.get("description") or ""),
        each=raw.get("each"),
        types=frozenset(AppType(t) for t in types) if isinstance(types, list) else None,
        service_file=raw.get("service-file"),
        after=after,
        reads=Reads(
            config=tuple(reads.get("config") or ()),
            identity=tuple(reads.get("identity") or ()),
            templates=tuple(reads.get("templates") or ()),
            source=bool(reads.get("source")),
            key=bool(reads.get("key")),
            epoch=bool(reads.get("epoch")),
            mirror=bool(reads.get("mirror")),
            local=bool(reads.get("local")),
            base=bool(reads.get("base")),
            sandbox=bool(reads.get("sandbox")),
            git=bool(reads.get("git")),
        ),
        build_on=raw.get("build-on"),
    )


__all__ = ["Diagnostic", "Pipeline", "Reads", "Stage", "load_pipeline", "pipelines_dir"]
