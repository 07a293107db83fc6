"""`pakman render` and `pakman bootstrap`: where files go, what is rewritten, what is printed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pakman.cli import main
from support import EXAMPLES, GOLDEN

IDENTITY = ["--organization", "upmaru", "--package-version", "1.2.3", "--release", "4"]


@pytest.fixture
def pyweb(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLES / "pyweb", tmp_path / "pyweb"))


def test_render_writes_the_golden_files_into_apk_org_name(
    pyweb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", str(pyweb), *IDENTITY]) == 0
    out_dir = pyweb / ".apk" / "upmaru" / "pyweb"
    written = sorted(p.name for p in out_dir.iterdir() if p.name != ".pakman-rendered")
    assert written == sorted(p.name for p in (GOLDEN / "pyweb").iterdir())
    assert (out_dir / ".pakman-rendered").read_text().splitlines() == written
    for name in written:
        assert (out_dir / name).read_text() == (GOLDEN / "pyweb" / name).read_text()
    assert (out_dir / "APKBUILD").stat().st_mode & 0o777 == 0o644
    assert (out_dir / "pyweb.run").stat().st_mode & 0o777 == 0o755
    out = capsys.readouterr().out
    assert f"wrote {out_dir / 'APKBUILD'}\n" in out
    assert out.endswith(f"pyweb 1.2.3-r4: 13 files in {out_dir}, 13 written, 0 unchanged\n")


def test_a_second_run_rewrites_nothing_and_a_change_rewrites_its_file(
    pyweb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", str(pyweb), *IDENTITY]) == 0
    out_dir = pyweb / ".apk" / "upmaru" / "pyweb"
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    capsys.readouterr()
    assert main(["render", str(pyweb), *IDENTITY]) == 0
    assert "13 files in" in capsys.readouterr().out.splitlines()[-1]
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before

    config = pyweb / "instellar.yml"
    config.write_text(
        config.read_text().replace("rc-service pyweb stop\n  post-upgrade", "true\n  post-upgrade")
    )
    assert main(["render", str(pyweb), *IDENTITY]) == 0
    out = capsys.readouterr().out
    assert f"wrote {out_dir / 'pyweb.pre-upgrade'}\n" in out
    assert out.count("wrote ") == 1
    assert "1 written, 12 unchanged" in out


def test_files_no_longer_generated_are_removed_and_others_kept(
    pyweb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", str(pyweb), *IDENTITY]) == 0
    out_dir = pyweb / ".apk" / "upmaru" / "pyweb"
    (out_dir / "notes.txt").write_text("the user's own file")
    config = pyweb / "instellar.yml"
    text = config.read_text()
    start, end = text.index("  pre-upgrade: |"), text.index("  post-upgrade: |")
    config.write_text(text[:start] + text[end:])
    capsys.readouterr()

    assert main(["render", str(pyweb), *IDENTITY]) == 0

    out = capsys.readouterr().out
    assert f"removed {out_dir / 'pyweb.pre-upgrade'}\n" in out
    assert out.endswith("1 written, 11 unchanged, 1 removed\n")  # the APKBUILD lists hooks
    assert not (out_dir / "pyweb.pre-upgrade").exists()
    assert (out_dir / "notes.txt").exists()
    assert "pyweb.pre-upgrade" not in (out_dir / ".pakman-rendered").read_text()


def test_render_output_folder(pyweb: Path, tmp_path: Path) -> None:
    assert (
        main(["render", str(pyweb / "instellar.yml"), "-o", str(tmp_path / "out"), *IDENTITY]) == 0
    )
    assert (tmp_path / "out" / "APKBUILD").is_file()
    assert not (pyweb / ".apk").exists()


def test_a_static_site_without_nginx_conf_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = Path(shutil.copytree(EXAMPLES / "static-site", tmp_path / "site"))
    (site / "nginx.conf").unlink()
    assert main(["render", str(site), *IDENTITY]) == 3
    assert f"{site / 'nginx.conf'} does not exist" in capsys.readouterr().err
    assert not (site / ".apk").exists()


def test_an_invalid_config_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "instellar.yml").write_text("dependencies: {}\nbuild: []\n")
    assert main(["render", str(tmp_path)]) == 3
    assert "build: expected a mapping, got a list" in capsys.readouterr().err
    assert not (tmp_path / ".apk").exists()


def test_render_takes_one_app_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLES)]) == 3
    assert f"{EXAMPLES}: no instellar.yml in this folder" in capsys.readouterr().err


def test_warnings_are_printed_and_the_files_use_the_package_name(
    pyweb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = pyweb / "instellar.yml"
    config.write_text(
        config.read_text().replace("rc-service pyweb start", "rc-service pyweb reload")
    )
    assert main(["render", str(pyweb), *IDENTITY, "--package-name", "web-app"]) == 0
    err = capsys.readouterr().err
    assert (
        "instellar.yml:29:3: warning: run.name: the package is named `web-app`, so the service"
        in err
    )
    assert (
        "warning: hook.post-upgrade: `rc-service pyweb reload`: the service is installed as `web-app`"
        in err
    )
    initd = (pyweb / ".apk" / "upmaru" / "web-app" / "web-app.initd").read_text()
    assert "/var/lib/web-app/bin/env-exec" in initd


def test_bootstrap_reads_the_github_variables(
    pyweb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_WORKSPACE", str(pyweb))
    monkeypatch.setenv("GITHUB_REPOSITORY", "Upmaru/PyWeb.App")
    monkeypatch.setenv("GITHUB_RUN_NUMBER", "17")
    monkeypatch.chdir(pyweb.parent)
    assert main(["bootstrap"]) == 0
    apkbuild = (pyweb / ".apk" / "upmaru" / "pyweb-app" / "APKBUILD").read_text()
    assert "pkgname=pyweb-app\n" in apkbuild
    assert "pkgrel=17\n" in apkbuild
    assert "url=https://github.com/Upmaru/PyWeb.App\n" in apkbuild
    assert "pyweb-app 0.0.0-r17" in capsys.readouterr().out


def test_bootstrap_with_another_config(
    pyweb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    assert main(["bootstrap", "--config", str(pyweb / "instellar.yml"), *IDENTITY]) == 0
    assert (tmp_path / ".apk" / "upmaru" / "pyweb" / "APKBUILD").is_file()


def test_help_explains_where_files_go(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    out = capsys.readouterr().out
    assert ".apk/<org>/<name>/" in out and "--output" in out and "--package-name" in out
    with pytest.raises(SystemExit):
        main(["bootstrap", "--help"])
    assert "GITHUB_WORKSPACE" in capsys.readouterr().out
