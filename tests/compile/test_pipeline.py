from __future__ import annotations

from pathlib import Path

import pytest

from pakman.compile.pipeline import load_pipeline, pipelines_dir
from pakman.config.model import AppType
from pakman.errors import ConfigError
from pakman.render.files import GENERATED_FILES


def test_default_pipeline() -> None:
    pipeline = load_pipeline()
    names = [s.name for s in pipeline.stages]
    assert names[:5] == [
        "fetch-deps-build",
        "fetch-deps-runtime",
        "buildroot",
        "build",
        "collect",
    ]
    assert pipeline.stage("buildroot").build_on == "alpine"  # only in builds on alpine
    assert names[-3:] == ["package", "index", "sign"]
    assert pipeline.stage("build").reads.source is True
    assert pipeline.stage("render-initd").applies_to(AppType.STATIC) is False
    assert pipeline.stage("render-hook").each == "hook"
    assert pipelines_dir().joinpath("default.yml").exists()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.yml"
    path.write_text(text)
    return str(path)


def test_errors_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """stages:
  - name: a
    per: app
    produces: [x]
    action: m:f
  - name: b
    per: everywhere
    after: [c]
    produces: [y]
    action: not an action
    colour: red
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert [f"{d.line}:{d.column} {d.path}" for d in exc.value.errors] == [
        "7:10 stages[1].per",
        "10:13 stages[1].action",
        "11:5 stages[1].colour",
    ]


def test_after_must_name_an_earlier_stage(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """stages:
  - {name: a, per: app, produces: [x], action: m:f, after: [b]}
  - {name: b, per: app, produces: [y], action: m:f}
  - {name: b, per: app, produces: [z], action: m:f}
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    messages = [d.message for d in exc.value.errors]
    assert "`b` is not a stage defined before `a` (stages come in order)" in messages
    assert "stage `b` is defined twice" in messages


def test_a_cycle_of_stages_is_reported_as_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """stages:
  - {name: a, per: app, produces: [x], action: m:f, after: [c]}
  - {name: b, per: app, produces: [y], action: m:f, after: [a]}
  - {name: c, per: app, produces: [z], action: m:f, after: [b]}
  - {name: d, per: app, produces: [w], action: m:f, after: [e]}
  - {name: e, per: app, produces: [v], action: m:f}
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert [(d.path, d.message) for d in exc.value.errors] == [
        (
            "stages[0].after[0]",
            "`c` is not a stage defined before `a` (stages come in order); "
            "a -> b -> c -> a form a cycle",
        ),
        ("stages[3].after[0]", "`e` is not a stage defined before `d` (stages come in order)"),
    ]


def test_after_a_prefix_star_means_every_earlier_stage_named_so(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """stages:
  - {name: render-a, per: app, produces: [a], action: m:f}
  - {name: build, per: app, produces: [b], action: m:f}
  - {name: render-b, per: app, produces: [c], action: m:f}
  - {name: package, per: app, produces: [d], action: m:f, after: [build, render-*, render-b]}
  - {name: render-late, per: app, produces: [e], action: m:f}
""",
    )
    assert load_pipeline(path).stage("package").after == ("build", "render-a", "render-b")
    # the default pipeline: the package stage waits for every render stage
    stages = load_pipeline().stages
    package = load_pipeline().stage("package")
    renders = [s.name for s in stages if s.name.startswith("render-")]
    assert renders and set(renders) <= set(package.after)


def test_after_a_prefix_naming_no_earlier_stage_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """stages:
  - {name: a, per: app, produces: [x], action: m:f, after: [render-*]}
  - {name: render-b, per: app, produces: [y], action: m:f}
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert [(d.path, d.message) for d in exc.value.errors] == [
        ("stages[0].after[0]", "`render-*` names no stage defined before `a`"),
    ]
    path = write(
        tmp_path, 'stages:\n  - {name: c, per: app, produces: [z], action: m:f, after: ["*x"]}\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert [(d.line, d.column, d.path) for d in exc.value.errors] == [(2, 61, "stages[0].after[0]")]


def test_a_generated_files_stage_is_one_stage_per_declared_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """stages:
  - {name: write, per: app, generated-files: true, action: m:f}
  - {name: package, per: arch, produces: [p], action: m:g, after: [write-*]}
""",
    )
    pipeline = load_pipeline(path)
    expected = [f"write-{f.kind.lower()}" for f in GENERATED_FILES]
    assert [s.name for s in pipeline.stages] == [*expected, "package"]
    assert pipeline.stage("package").after == tuple(expected)
    for generated, stage in zip(GENERATED_FILES, pipeline.stages, strict=False):
        assert stage.action == "m:f"
        assert stage.description == generated.description
        assert stage.reads.config == generated.config
        assert stage.reads.identity == generated.identity
        assert stage.reads.templates == (generated.template,)
        assert stage.applies_to(AppType.STATIC) is not generated.runs


def test_a_generated_files_stage_takes_what_the_declarations_say(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """stages:
  - {name: write, per: arch, generated-files: true, produces: [x], action: m:f}
  - {name: package, per: arch, action: m:g}
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    assert [(d.path, d.message) for d in exc.value.errors] == [
        ("stages[0].per", "a `generated-files` stage is `per: app`"),
        (
            "stages[0].produces",
            "`produces` of a `generated-files` stage comes from render/files.py",
        ),
        ("stages[1].produces", "required key is missing"),
    ]
