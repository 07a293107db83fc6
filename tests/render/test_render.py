"""Rendering: goldens for every example, the escaping filters, and what each file reads."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pakman.compile.graph import AppBuild, declared_reads
from pakman.compile.pipeline import load_pipeline
from pakman.config.model import (
    AppConfig,
    AppType,
    Build,
    Command,
    Dependencies,
    Dependency,
    Identity,
    Run,
    Service,
)
from pakman.config.prepare import check_app_files
from pakman.errors import ConfigError
from pakman.render.engine import (
    FILTERS,
    RenderError,
    execline,
    file_reads,
    render_all,
    render_hook,
    render_kind,
    sh,
    sh_glob,
    sh_words,
)
from pakman.render.files import GENERATED_FILES, TEMPLATES, template_digest
from pakman.steps.staging import stage_service_files
from render_helpers import EXAMPLE_NAMES, example, need
from support import GOLDEN, updating_goldens

render_apkbuild = functools.partial(render_kind, "APKBUILD")
render_pre_install = functools.partial(render_kind, "pre-install")

# --------------------------------------------------------------------------
# Goldens


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_goldens(
    name: str, golden: Callable[[Path, str], None], request: pytest.FixtureRequest
) -> None:
    app, identity = example(name)
    files = render_all(app, identity)
    folder = GOLDEN / name
    for file_name, rendered in files.items():
        golden(folder / file_name, rendered.text)
    stale = sorted({p.name for p in folder.iterdir()} - set(files))
    if updating_goldens(request.config):
        for file_name in stale:
            (folder / file_name).unlink()
    else:
        assert not stale, (
            f"golden files no longer rendered: {stale} (--update-goldens removes them)"
        )


def test_every_template_is_used_and_named_after_its_file() -> None:
    templates = {p.name for p in TEMPLATES.iterdir()}
    assert templates == {k.template for k in GENERATED_FILES} | {"hook"}
    assert all(k.kind == k.template for k in GENERATED_FILES)


@pytest.mark.parametrize("name", ["pyweb", "heartbeat"])
def test_both_package_bodies_install_what_the_declaration_says(name: str, tmp_path: Path) -> None:
    """The APKBUILD's package() and the Python one read the same table, files.GENERATED_FILES."""
    app, identity = example(name)
    text = render_apkbuild(app, identity)
    installs = re.findall(
        r'install -D -m (\d+) "\$startdir/\$pkgname\.(\S+)" "\$pkgdir/(\S+)"', text
    )
    declared = [
        (f"{f.mode:o}", f.kind, f.installed.format(name="$pkgname"))
        for f in GENERATED_FILES
        if f.installed is not None and f.kind in app.service_files
    ]
    assert installs == declared and declared
    rendered = tmp_path / "render"
    rendered.mkdir()
    for kind in app.service_files:
        (rendered / f"{identity.name}.{kind}").write_text(kind)
    stage_service_files(app, identity, tmp_path, rendered, tmp_path / "pkg")
    staged = sorted(
        (f"{p.stat().st_mode & 0o777:o}", p.read_text(), p.relative_to(tmp_path / "pkg").as_posix())
        for p in (tmp_path / "pkg").rglob("*")
        if p.is_file()
    )
    named = sorted((m, k, path.replace("$pkgname", identity.name)) for m, k, path in declared)
    assert staged == named


def test_template_digest_is_the_sha256_of_the_source() -> None:
    import hashlib

    source = (TEMPLATES / "initd").read_bytes()
    assert template_digest("initd") == hashlib.sha256(source).hexdigest()
    assert template_digest("initd") != template_digest("run")


# --------------------------------------------------------------------------
# Every value goes through one filter


_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.iterdir()))
def test_every_expression_ends_in_an_escaping_filter(template: str) -> None:
    """No value reaches a script unfiltered, and no template quotes a value by hand."""
    text = (TEMPLATES / template).read_text()
    for expression in _EXPRESSION.findall(text):
        last = expression.rsplit("|", 1)
        assert len(last) == 2 and last[1].strip() in FILTERS, f"{template}: {{{{{expression}}}}}"
    assert not re.search(r"""['"]\{\{""", text), f"{template} quotes a value by hand"


# --------------------------------------------------------------------------
# The filters


@given(st.text(alphabet=st.characters(blacklist_characters="\x00")))
def test_sh_is_one_word_meaning_the_value(value: str) -> None:
    assert shlex.split(sh(value)) == [value]


HOSTILE_WORDS = [
    "it's",
    'say "hi"',
    "$(touch marker)",
    "`touch marker`",
    "a; touch marker",
    "line\ntouch marker",
    "--",
    "-rf",
    "ünïcødé ✓",
    "${HOME}",
    "*",
    "\\",
    "",
    "   ",
    "!",
    "#",
    "~",
]


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_sh_words_reach_a_real_shell_intact(shell: str, tmp_path: Path) -> None:
    need(shell)
    script = f"cd {sh(tmp_path)} && printf '%s\\0' {sh_words(HOSTILE_WORDS)}"
    out = subprocess.run([shell, "-c", script], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == HOSTILE_WORDS
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    ("pattern", "quoted"),
    [
        ("bin", "bin"),
        ("*", "*"),
        ("_build/prod/rel/app/*", "_build/prod/rel/app/*"),
        ("public/*.html", "public/*.html"),
        ("a?c", "a?c"),
        ("lib[0-9]", "lib[0-9]"),
        ("x[!a]", "x[!a]"),
        ("it's*", "'it'\"'\"'s'*"),
        ("$(touch m)*", "'$(touch m)'*"),
        ("[$(touch m)]", "'[$(touch m)]'"),
        ("a b", "'a b'"),
    ],
)
def test_sh_glob_quotes_literals_and_leaves_wildcards(pattern: str, quoted: str) -> None:
    assert sh_glob(pattern) == quoted


@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("/var/log/pyweb", "/var/log/pyweb"),
        ("a b", '"a b"'),
        ('q"x', '"q\\"x"'),
        ("back\\slash", '"back\\\\slash"'),
        ("{", '"{"'),
        ("#x", '"#x"'),
        ("", '""'),
    ],
)
def test_execline_words(value: str, word: str) -> None:
    assert execline(value) == word


def test_nul_cannot_be_rendered() -> None:
    with pytest.raises(RenderError, match="NUL"):
        sh("a\x00b")


# --------------------------------------------------------------------------
# The APKBUILD


def _app(**changes: object) -> AppConfig:
    app, _ = example("pyweb")
    return dataclasses.replace(app, **changes)  # type: ignore[arg-type]


def _identity() -> Identity:
    return example("pyweb")[1]


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", text, re.M)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize(
    ("trace", "strip", "options"),
    [
        (False, True, "'!check !tracedeps'"),
        (True, True, "'!check'"),
        (False, False, "'!check !tracedeps !strip'"),
        (True, False, "'!check !strip'"),
    ],
)
def test_options_follow_trace_and_strip_binary(trace: bool, strip: bool, options: str) -> None:
    app = _app(
        dependencies=Dependencies(trace=trace),
        build=Build(command="true", destinations=("bin",), strip_binary=strip),
    )
    assert _field(render_apkbuild(app, _identity()), "options") == options


@pytest.mark.parametrize(
    ("architectures", "arch"),
    [
        (("x86_64",), "x86_64"),
        (("x86_64", "aarch64", "armv7"), "'x86_64 aarch64 armv7'"),
        (("noarch",), "noarch"),
    ],
)
def test_arch_lists_every_architecture(architectures: tuple[str, ...], arch: str) -> None:
    assert _field(render_apkbuild(_app(architectures=architectures), _identity()), "arch") == arch


def test_static_site_depends_on_nginx_and_has_no_openrc_subpackage() -> None:
    app, identity = example("static-site")
    text = render_apkbuild(app, identity)
    assert _field(text, "depends") == "nginx"
    assert "subpackages" not in text
    assert 'install -D -m 644 "$srcdir/nginx.conf" "$pkgdir/etc/$pkgname/default.conf"' in text
    assert "$pkgname.initd" not in text
    listed = dataclasses.replace(
        app, dependencies=Dependencies(runtime=(Dependency("nginx", ">=1.24"),))
    )
    assert _field(render_apkbuild(listed, identity), "depends") == "'nginx>=1.24'"


def test_custom_type_uses_its_own_package_and_source_verbatim() -> None:
    app, identity = example("greet")
    app = dataclasses.replace(app, source="greet.initd\n\tgreet.confd")
    text = render_apkbuild(app, identity)
    assert app.package is not None
    assert app.package.rstrip("\n") in text
    assert 'source="$pkgname-$pkgver.tar\ngreet.initd\n\tgreet.confd\n\t"' in text
    assert "prepare()" not in text  # the user's package() may need abuild's links
    assert _field(text, "subpackages") == '"$pkgname-openrc"'


def test_default_type_lists_the_service_files_then_the_users_source() -> None:
    text = render_apkbuild(_app(source="extra.patch"), _identity())
    source = text.split('source="', 1)[1].split('"', 1)[0].split()
    assert source == [
        "$pkgname-$pkgver.tar",
        *(f"$pkgname.{k}" for k in ("initd", "run", "finish", "log", "environment")),
        "$pkgname.env-exec",
        "$pkgname.profile",
        "extra.patch",
    ]


def test_install_lists_pre_install_once_and_each_hook() -> None:
    hooks = MappingProxyType({"pre-install": "echo mine\n", "post-upgrade": "echo up\n"})
    files = render_all(_app(hooks=hooks), _identity())
    text = files["APKBUILD"].text
    install = text.split('install="', 1)[1].split('"', 1)[0].split()
    assert install == ["$pkgname.pre-install", "$pkgname.post-upgrade"]
    assert sorted(n for n in files if "install" in n or "upgrade" in n) == [
        "pyweb.post-upgrade",
        "pyweb.pre-install",
    ]


def test_user_pre_install_runs_after_the_user_is_created() -> None:
    app = _app(hooks=MappingProxyType({"pre-install": "mkdir -p /srv/data\nexit 0\n"}))
    text = render_pre_install(app, _identity())
    assert text.index("adduser -S") < text.index("mkdir -p /srv/data")
    assert text.endswith("mkdir -p /srv/data\nexit 0\n")
    assert text.count("exit 0") == 1
    assert render_pre_install(_app(hooks=MappingProxyType({})), _identity()).endswith("exit 0\n")


def test_build_command_is_verbatim_after_cd_srcdir() -> None:
    command = 'cat <<EOF > out\n  $pkgver "x"\nEOF\n'
    app = _app(build=Build(command=command, destinations=("bin",)))
    text = render_apkbuild(app, _identity())
    assert 'build() {\n\tcd "$srcdir" || return 1\ncat <<EOF > out\n  $pkgver "x"\nEOF\n}\n' in text


def test_run_name_other_than_the_package_name_gives_working_files() -> None:
    app = _app(run=dataclasses.replace(_app().run, name="something-else"))  # type: ignore[arg-type]
    files = render_all(app, _identity())
    assert "something-else" not in "".join(f.text for f in files.values())
    assert "/var/lib/pyweb/bin/env-exec" in files["pyweb.initd"].text


def test_services_are_selected_by_service_mode() -> None:
    run = render_all(*example("pyweb"))["pyweb.run"].text
    assert "\tworker)\n\t\texec /var/lib/pyweb/bin/pyweb work --interval 5 2>&1\n" in run
    assert "\t*)\n\t\texec /var/lib/pyweb/bin/pyweb serve --port 8080 2>&1\n" in run


def test_commands_become_extra_commands() -> None:
    initd = render_all(*example("pyweb"))["pyweb.initd"].text
    assert "extra_commands='migrate logs'" in initd
    assert "\nmigrate() {\n" in initd and "\nlogs() {\n" in initd


def test_a_relative_path_or_binary_runs_from_the_apps_folder_as_in_the_original() -> None:
    """The original's scripts `cd /var/lib/<name>` first, so `path: bin` meant that folder."""
    app, identity = example("pyweb")
    run = Run(
        services=(Service("web", "server", "start", path="release/bin"),),
        commands=(Command("migrate", "bin/tool", "up"),),
    )
    files = render_all(dataclasses.replace(app, run=run), identity)
    assert "exec /var/lib/pyweb/release/bin/server start 2>&1" in files["pyweb.run"].text
    assert "'/var/lib/pyweb/bin/bin/tool up'" in files["pyweb.initd"].text


def test_a_command_name_that_is_not_a_function_name_is_refused() -> None:
    run = Run(
        services=(Service("web", "app", ""),),
        commands=(Command("do it; rm", "app"),),
    )
    with pytest.raises(RenderError, match="function name"):
        render_all(_app(run=run), _identity())


def test_package_name_must_be_able_to_name_a_file() -> None:
    with pytest.raises(RenderError, match="cannot name a file"):
        render_all(_app(), dataclasses.replace(_identity(), name="../x"))


def test_static_without_nginx_conf_names_the_file(tmp_path: Path) -> None:
    app, _ = example("static-site")
    moved = dataclasses.replace(app, file=tmp_path / "instellar.yml")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nginx.conf"))):
        check_app_files(moved)
    check_app_files(app)


# --------------------------------------------------------------------------
# What each file reads


def _variants(app: AppConfig, identity: Identity) -> list[tuple[AppConfig, Identity]]:
    """The app and identity with one value changed at a time."""
    run = app.run
    assert run is not None
    other_service = Service("other", "other-binary", "--flag", path="/opt/bin")
    return [
        (dataclasses.replace(app, type=AppType.STATIC), identity),
        (dataclasses.replace(app, architectures=("aarch64",)), identity),
        (dataclasses.replace(app, dependencies=Dependencies(trace=True)), identity),
        (dataclasses.replace(app, build=Build(command="make", destinations=("out",))), identity),
        (
            dataclasses.replace(app, run=dataclasses.replace(run, services=(other_service,))),
            identity,
        ),
        (dataclasses.replace(app, run=dataclasses.replace(run, commands=())), identity),
        (dataclasses.replace(app, run=dataclasses.replace(run, services=())), identity),
        (dataclasses.replace(app, run=None), identity),
        (dataclasses.replace(app, run=dataclasses.replace(run, name="renamed")), identity),
        (dataclasses.replace(app, hooks=MappingProxyType({"pre-install": "echo hi"})), identity),
        (
            dataclasses.replace(app, hooks=MappingProxyType({"post-install": "echo changed"})),
            identity,
        ),
        (dataclasses.replace(app, source="extra.patch"), identity),
        (dataclasses.replace(app, package="true"), identity),
        (dataclasses.replace(app, kits=()), identity),
        (app, dataclasses.replace(identity, name="renamed")),
        (app, dataclasses.replace(identity, version="9.9.9")),
        (app, dataclasses.replace(identity, release=99)),
        (app, dataclasses.replace(identity, url="https://example.com/x")),
        (app, dataclasses.replace(identity, organization="elsewhere")),
    ]


RENDER_STAGES = {
    "APKBUILD": "render-apkbuild",
    **{k.kind: f"render-{k.kind}" for k in GENERATED_FILES if k.kind != "APKBUILD"},
}


@pytest.mark.parametrize("kind", [k.kind for k in GENERATED_FILES])
def test_a_file_changes_only_when_what_its_stage_reads_changes(kind: str) -> None:
    """If a change alters a file's text, the slice its pipeline stage declares must alter too."""
    spec = next(k for k in GENERATED_FILES if k.kind == kind)
    stage = load_pipeline().stage(RENDER_STAGES[kind])
    assert stage.reads.templates == (spec.template,)
    app, identity = example("pyweb")
    if kind == "APKBUILD":
        # The release is filled in when packaging (see steps/package.py), not rendered.
        identity = dataclasses.replace(identity, release=0)

    def rendered(a: AppConfig, i: Identity) -> str:
        return render_kind(kind, a, dataclasses.replace(i, release=0) if kind == "APKBUILD" else i)

    before = rendered(app, identity)
    before_slice = declared_reads(stage, AppBuild(app, identity))
    changed_any = False
    for other_app, other_identity in _variants(app, identity):
        if not stage.applies_to(other_app):
            continue  # this app has no such file (an app without services has no run script)
        try:
            after = rendered(other_app, other_identity)
        except RenderError:
            continue
        if after != before:
            changed_any = True
            assert declared_reads(stage, AppBuild(other_app, other_identity)) != before_slice
    if before_slice:
        assert changed_any, f"no variant changes {kind}; the test does not exercise it"


def test_hook_stage_reads_its_hook() -> None:
    stage = load_pipeline().stage("render-hook")
    app, identity = example("pyweb")
    changed = dataclasses.replace(app, hooks={**app.hooks, "post-install": "echo changed"})
    assert render_hook(app, identity, "post-install") != render_hook(
        changed, identity, "post-install"
    )
    assert declared_reads(stage, AppBuild(app, identity), "post-install") != declared_reads(
        stage, AppBuild(changed, identity), "post-install"
    )
    assert declared_reads(stage, AppBuild(app, identity), "pre-upgrade") == declared_reads(
        stage, AppBuild(changed, identity), "pre-upgrade"
    )


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_pakman_render_gives_each_file_the_slice_its_build_step_is_keyed_on(name: str) -> None:
    """`pakman render` (render_all) and a build's render step render from the same slice."""
    app, identity = example(name)
    for generated in GENERATED_FILES:
        stage = load_pipeline().stage(f"render-{generated.kind.lower()}")
        keyed = declared_reads(stage, AppBuild(app, identity))
        given = file_reads(generated, app, identity)
        assert json.loads(json.dumps(given)) == json.loads(json.dumps(keyed))
