"""A generated file is a template plus one declaration in pakman/render/files.py.

The declaration alone gives the file its render stage (keyed on exactly what
it declares to read), its renderer and its place in the package.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from build_support import build, make_key, make_workspace
from pakman.compile.pipeline import load_pipeline
from pakman.compile.settings import Settings
from pakman.project import load_project
from pakman.render import engine, files
from pakman.render.files import GeneratedFile

MOTD = GeneratedFile(
    "motd",
    0o644,
    "write the login message",
    "etc/motd.d/{name}",
    ("services", "commands"),
    identity=("name",),
)
MOTD_TEMPLATE = "{{ identity.name }} lives in {{ home }}\n"


@pytest.fixture
def motd_declared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """MOTD declared beside the real files, with its template (both for this test only)."""
    templates = tmp_path / "templates"
    shutil.copytree(files.TEMPLATES, templates)
    (templates / "motd").write_text(MOTD_TEMPLATE)
    declared = (*files.GENERATED_FILES, MOTD)
    monkeypatch.setattr(files, "TEMPLATES", templates)
    monkeypatch.setattr(files, "GENERATED_FILES", declared)
    # What files.py derives from the declarations when it is imported.
    for name, runs in (("SERVICE_FILES", "services"), ("COMMAND_FILES", "commands")):
        monkeypatch.setattr(files, name, tuple(f.kind for f in declared if runs in f.runs))
    monkeypatch.setattr(
        files,
        "INSTALLED_FILES",
        tuple((f.kind, f.installed, f.mode) for f in declared if f.installed is not None),
    )
    monkeypatch.setattr(engine.ENVIRONMENT, "loader", jinja2.FileSystemLoader(templates))
    load_pipeline.cache_clear()
    yield tmp_path
    load_pipeline.cache_clear()


def test_a_declaration_yields_a_render_stage_of_what_it_declares(motd_declared: Path) -> None:
    stage = load_pipeline().stage("render-motd")
    assert stage.description == "write the login message"
    assert stage.produces == ("{work}/render/{name}.motd",)
    assert (stage.reads.config, stage.reads.identity, stage.reads.templates) == (
        (),
        ("name",),
        ("motd",),
    )
    assert stage.service_file == "motd"
    assert "render-motd" in load_pipeline().stage("package").after


def test_a_declaration_alone_renders_and_installs_a_file(motd_declared: Path) -> None:
    workspace = make_workspace(motd_declared / "ws", ["pyweb", "greet"])
    key = make_key(motd_declared / "key")
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    assert "pyweb:render-motd" in run.ran
    assert not any("greet:render-motd" in s for s in run.ran)  # greet runs nothing
    render = workspace / ".pakman/build/pyweb/render"
    assert (render / "pyweb.motd").read_text() == "pyweb lives in /var/lib/pyweb\n"
    assert "$pkgname.motd" in (render / "APKBUILD").read_text()  # the APKBUILD's package() too
    with tarfile.open(workspace / ".pakman/repo/x86_64/pyweb-0.0.0-r0.apk", "r:gz") as apk:
        member = apk.getmember("etc/motd.d/pyweb")
        assert member.mode == 0o644
        handle = apk.extractfile(member)
        assert handle is not None and handle.read() == b"pyweb lives in /var/lib/pyweb\n"
    # Its key is made of what it declares (the name and the template) and the
    # step's action got just that.
    settings = Settings(
        paths=(str(workspace / "apps"),),
        root=str(workspace),
        key_file=str(key.private),
        offline=True,
    )
    step = load_project(settings, use_snapshot=False).graph["pyweb:render-motd"]
    digest = hashlib.sha256(MOTD_TEMPLATE.encode()).hexdigest()
    assert step.reads == {"identity": {"name": "pyweb"}, "templates": {"motd": digest}}
