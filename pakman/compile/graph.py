"""Model + pipeline -> the step graph: the steps in dependency order, each with a content key.

A build orders the steps by stage (`StepGraph`) and never imports networkx;
the networkx DiGraph of the same steps (`StepGraph.dag`) is built only when
asked for (exports, `pakman graph --affected`).

A step is one stage instantiated for one app (and architecture, or hook), or
once per repository architecture. Its key is a hash of exactly what it
reads — its slice of the configuration, the identity fields it uses, the
templates it renders, the source tree by content, the signing key's public
half, the keys of the steps it depends on — and of pakman's version. Never
of times, run numbers it does not write, or absolute paths.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pakman import __version__
from pakman.alpine import NOARCH, host_arch
from pakman.compile.pipeline import Pipeline, Stage
from pakman.config.gitmeta import GitMetadata
from pakman.config.model import AppConfig, AppType, FrozenDict, Identity, freeze
from pakman.config.reads import config_data, config_slice
from pakman.errors import ConfigError
from pakman.workspace.fingerprint import SourceTree
from pakman.workspace.layout import REPOSITORY, Layout

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class AppBuild:
    """One app to build: its configuration and who its package is."""

    config: AppConfig
    identity: Identity
    git: GitMetadata | None = None  # with build.git: true, what the build sees of git

    @property
    def name(self) -> str:
        return self.identity.name

    def package_names(self) -> tuple[str, ...]:
        """The packages this app produces (its OpenRC split when it installs an init script)."""
        if self.config.type is AppType.DEFAULT and "initd" in self.config.service_files:
            return (self.name, f"{self.name}-openrc")
        return (self.name,)


@dataclass(frozen=True)
class Step:
    """One node of the graph: what runs, on what, producing what."""

    id: str
    stage: str
    action: str
    description: str
    app: AppBuild | None
    arch: str | None
    item: str | None
    outputs: tuple[str, ...]  # absolute paths; a trailing / marks a folder
    reads: Mapping[str, Any]  # the slice this step's key is made of
    upstream: tuple[str, ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()  # (upstream step id, one of its outputs)
    upstream_keys: tuple[tuple[str, str], ...] = ()  # (upstream step id, its key)
    source: SourceTree | None = field(default=None, compare=False, repr=False)
    key: str = ""
    complete: bool = True  # False: a summary kept to say the step is done; it cannot run

    @classmethod
    def summary(
        cls, step_id: str, stage: str, arch: str | None, key: str, outputs: tuple[str, ...]
    ) -> Step:
        """A step known only by its id, key and outputs (from the snapshot's plan).

        A build makes one for every step of every app that did not change
        (thousands at hundreds of apps). Its fields are filled in directly,
        which is much faster than the frozen dataclass's `__init__`; the result is
        equal to `Step(step_id, stage, "", "", None, arch, None, outputs,
        FrozenDict(), key=key, complete=False)`.
        """
        step = object.__new__(cls)
        step.__dict__.update(_SUMMARY, id=step_id, stage=stage, arch=arch, key=key, outputs=outputs)
        return step

    @property
    def namespace(self) -> str:
        """The app's name, or `repo` for the shared steps (doit's basename)."""
        return self.id.split(":", 1)[0]

    @property
    def local_name(self) -> str:
        """The step's name inside its namespace: `build:x86_64`."""
        return self.id.split(":", 1)[1]


# What a summary holds besides its id, stage, arch, key and outputs.
_SUMMARY: dict[str, Any] = {
    "action": "",
    "description": "",
    "app": None,
    "item": None,
    "reads": FrozenDict(),
    "upstream": (),
    "inputs": (),
    "upstream_keys": (),
    "source": None,
    "complete": False,
}


class StepGraph:
    """The steps of a build, each with its key, and their dependencies.

    Stages may only come after earlier ones (the pipeline checks that), so
    ordering steps by stage gives a topological order without a graph
    search, and a build never imports networkx. The networkx DiGraph (`dag`)
    is built when asked for: exports, `pakman graph --affected`.
    """

    def __init__(self, steps: Iterable[Step], pipeline: Pipeline) -> None:
        rank = {stage.name: i for i, stage in enumerate(pipeline.stages)}

        def place(step: Step) -> tuple[bool, str, int, str]:
            namespace = step.id.partition(":")[0]  # 3,000 steps at 200 apps: not the property
            return (namespace == REPOSITORY, namespace, rank[step.stage], step.id)

        ordered = sorted(steps, key=place)
        self.steps: dict[str, Step] = {s.id: s for s in ordered}

    @functools.cached_property
    def dag(self) -> nx.DiGraph[str]:
        """The steps as a networkx DiGraph of step ids (edges point downstream; no cycle)."""
        import networkx as nx  # only here: the no-op path does not pay for it

        dag: nx.DiGraph[str] = nx.DiGraph()
        dag.add_nodes_from(self.steps)
        dag.add_edges_from((u, s.id) for s in self.steps.values() for u in s.upstream)
        return dag

    def __getitem__(self, step_id: str) -> Step:
        return self.steps[step_id]

    def __len__(self) -> int:
        return len(self.steps)

    def order(self) -> list[Step]:
        """Every step, dependencies first, in a stable order (app by app, the repository last)."""
        return list(self.steps.values())

    def affected(self, step_ids: Iterable[str]) -> list[Step]:
        """These steps and every step downstream of them (what reruns when they do), in order."""
        import networkx as nx

        reached = set(step_ids)
        for step_id in list(reached):
            reached |= nx.descendants(self.dag, step_id)
        return [s for s in self.steps.values() if s.id in reached]


@dataclass(frozen=True)
class BuildInputs:
    """What every step of one build is made with, besides its own app."""

    layout: Layout
    provided: frozenset[str]  # package names the apps of this build produce
    key_fingerprint: str
    mirror: Mapping[str, Any]  # where indexes come from, and whether the build is offline
    template_digest: Callable[[str], str]
    # Only some of the workspace's apps (--only): the repository keeps the others' packages.
    partial: bool = False
    build_base: tuple[str, ...] = ()  # the packages every build root has besides dependencies.build
    # --build-on alpine: {"build_on", "network"} (steps that read `sandbox` get it); None: host
    sandbox: Mapping[str, str] | None = None

    @property
    def build_on(self) -> str:
        return self.sandbox["build_on"] if self.sandbox else "host"


def compile_app(
    app: AppBuild, pipeline: Pipeline, inputs: BuildInputs, source: SourceTree
) -> list[Step]:
    """One app's steps, with keys: they depend on nothing outside the app."""
    by_stage: dict[str, list[Step]] = {}
    steps: list[Step] = []
    for stage in pipeline.stages:
        if stage.per == "repository" or not stage.applies_to(app.config):
            continue
        if stage.build_on is not None and stage.build_on != inputs.build_on:
            continue
        arches: list[str | None] = list(app.config.architectures) if stage.per == "arch" else [None]
        items: list[str | None] = (
            [h for h in sorted(app.config.hooks) if h != "pre-install"]
            if stage.each == "hook"
            else [None]
        )
        made = by_stage.setdefault(stage.name, [])
        for arch in arches:
            for item in items:
                step = _make_step(stage, app, arch, item, inputs)
                if stage.reads.source:
                    step = _with_source(step, source)
                upstream = [
                    u
                    for name in stage.after
                    for u in by_stage.get(name, ())
                    if u.arch is None or arch is None or u.arch == arch
                ]
                made.append(_finish(step, upstream))
        steps.extend(made)
    return steps


def arches_of(architectures: Iterable[str]) -> list[str]:
    """The real architectures among these, or this machine's when there is none."""
    real = sorted({a for a in architectures if a != NOARCH})
    return real or [host_arch()]


def compile_repository(
    arches: Sequence[str], app_steps: Iterable[Step], pipeline: Pipeline, inputs: BuildInputs
) -> list[Step]:
    """The shared steps, per repository architecture, over every app's steps."""
    by_stage: dict[str, list[Step]] = {}
    for step in app_steps:
        by_stage.setdefault(step.stage, []).append(step)
    steps: list[Step] = []
    shared_by_stage: dict[str, list[Step]] = {}
    for stage in pipeline.stages:
        if stage.per != "repository":
            continue
        if stage.build_on is not None and stage.build_on != inputs.build_on:
            continue
        made = shared_by_stage.setdefault(stage.name, [])
        for arch in arches:
            step = _make_step(stage, None, arch, None, inputs)
            upstream = [
                u
                for name in stage.after
                for u in (
                    [s for s in shared_by_stage.get(name, ()) if s.arch == arch]
                    if name in shared_by_stage
                    else [s for s in by_stage.get(name, ()) if s.arch in (arch, NOARCH)]
                )
            ]
            made.append(_finish(step, upstream))
        steps.extend(made)
    return steps


def _finish(step: Step, upstream: Sequence[Step]) -> Step:
    """Give a step its upstream steps and its key."""
    upstream = sorted(upstream, key=lambda u: u.id)
    keys = tuple((u.id, u.key) for u in upstream)
    key = _step_key(step, step.reads, dict(keys))
    return dataclasses.replace(
        step,
        upstream=tuple(u.id for u in upstream),
        inputs=tuple((u.id, o) for u in upstream for o in u.outputs),
        upstream_keys=keys,
        key=key,
    )


def _step_key(
    step: Step, reads: Mapping[str, Any], upstream: Mapping[str, Any], **extra: Any
) -> str:
    """The hash a step is known by: pakman's version, its stage and action, what it reads,
    its upstream steps' keys (and, for `portable_keys`, a mark of its own)."""
    payload = {
        "pakman": __version__,
        "stage": step.stage,
        "action": step.action,
        "reads": reads,
        "upstream": upstream,
        **extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def check_names(apps: list[AppBuild]) -> None:
    seen: dict[str, AppBuild] = {}
    for app in apps:
        if app.name == REPOSITORY:
            raise ConfigError(
                f"{app.config.file}: an app may not be named `{REPOSITORY}`: the name is used "
                "by the shared repository steps; set another with --package-name"
            )
        if app.name in seen:
            raise ConfigError(
                f"two apps are both named `{app.name}`: {seen[app.name].config.file} and "
                f"{app.config.file}; give one another name (run.name or its folder)"
            )
        seen[app.name] = app


def declared_reads(stage: Stage, app: AppBuild, item: str | None = None) -> dict[str, Any]:
    """The configuration and identity values a stage reads for one app (JSON-ready)."""
    reads: dict[str, Any] = {}
    if stage.reads.config:
        data = config_data(app.config)
        reads["config"] = {
            k.format(each=item): config_slice(data, k, item) for k in stage.reads.config
        }
    if stage.reads.identity:
        fields = list(stage.reads.identity)
        if "build.command" in stage.reads.config and "pkgrel" in app.config.build.command:
            fields.append("release")  # the command reads $pkgrel, so the release is an input
        reads["identity"] = {k: getattr(app.identity, k) for k in fields}
    return reads


def _make_step(
    stage: Stage,
    app: AppBuild | None,
    arch: str | None,
    item: str | None,
    inputs: BuildInputs,
) -> Step:
    namespace = app.name if app else REPOSITORY
    step_id = ":".join(p for p in (namespace, stage.name, arch, item) if p)
    reads: dict[str, Any] = declared_reads(stage, app, item) if app else {}
    if stage.reads.templates:
        reads["templates"] = {t: inputs.template_digest(t) for t in stage.reads.templates}
    if stage.reads.key:
        reads["key"] = inputs.key_fingerprint
    if stage.reads.epoch and app is not None:
        reads["epoch"] = app.identity.epoch
    if stage.reads.mirror:
        reads["mirror"] = inputs.mirror
    if app is None and inputs.partial:
        # The packages this build replaces in the repository; the others stay.
        reads["only"] = sorted(inputs.provided)
    if stage.reads.base:
        reads["base"] = list(inputs.build_base)
    if stage.reads.git and app is not None and app.git is not None:
        reads["git"] = app.git.key()  # the commit and the tags: a commit reruns the build
    if stage.reads.sandbox and inputs.sandbox is not None:
        # only on alpine: a build on the host keeps the keys it had
        reads["sandbox"] = dict(inputs.sandbox)
    if stage.reads.local and app is not None:
        runtime = [d.name for d in app.config.dependencies.runtime]
        reads["local"] = sorted(n for n in runtime if n in inputs.provided)
    if arch is not None:
        reads["arch"] = arch
    if item is not None:
        reads["item"] = item
    work = inputs.layout.work(app.name if app else None)
    outputs = tuple(
        p.format(
            work=work, repo=inputs.layout.repo, arch=arch or "", name=namespace, each=item or ""
        )
        for p in stage.produces
    )
    return Step(
        id=step_id,
        stage=stage.name,
        action=stage.action,
        description=stage.description,
        app=app,
        arch=arch,
        item=item,
        outputs=outputs,
        reads=freeze(json.loads(json.dumps(reads))),
    )


def _with_source(step: Step, tree: SourceTree) -> Step:
    reads = dict(step.reads)
    reads["source"] = tree.fingerprint
    return dataclasses.replace(step, reads=FrozenDict(reads), source=tree)


def portable_keys(graph: StepGraph, step_ids: Iterable[str]) -> dict[str, str]:
    """The keys of these steps with the signing key left out, through their upstream steps.

    What a remote cache names a step's outputs by: the same in workspaces
    that sign with different keys (the packages are signed again locally).
    A step that reads no key, and whose upstream steps do not, keeps its key.
    Steps known only by a summary (and those after them) get none.
    Computed only for a build with a remote cache.
    """
    found: dict[str, str | None] = {}

    def portable(step_id: str) -> str | None:
        if step_id in found:
            return found[step_id]
        step = graph[step_id]
        key: str | None = None
        if step.complete:
            upstream = {u: portable(u) for u in step.upstream}
            if all(k is not None for k in upstream.values()):
                if "key" not in step.reads and all(k == graph[u].key for u, k in upstream.items()):
                    key = step.key
                else:
                    reads = {k: v for k, v in step.reads.items() if k != "key"}
                    key = _step_key(step, reads, upstream, portable=True)
        found[step_id] = key
        return key

    keys = {s: portable(s) for s in step_ids}
    return {s: k for s, k in keys.items() if k is not None}
