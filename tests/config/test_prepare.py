"""One way to prepare an app (pakman.config.prepare): check, render and build agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pakman.cli import main
from pakman.config.prepare import InvalidApp, prepare_app
from pakman.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UNKNOWN_SERVICE = "    rc-service nonesuch restart\n"


def _site_without_nginx_conf(tmp_path: Path) -> Path:
    """The static example with a hook warning and without the nginx.conf it needs."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLES / "static-site", site)
    (site / "nginx.conf").unlink()
    config = site / "instellar.yml"
    text = config.read_text()
    config.write_text(text.replace("    rc-service nginx reload || true\n", UNKNOWN_SERVICE, 1))
    return config


def _diagnostics(text: str, config: Path) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"{config}:")]


def test_check_render_and_build_report_the_same_diagnostics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _site_without_nginx_conf(tmp_path)
    monkeypatch.chdir(tmp_path)

    assert main(["check", str(config)]) == 3
    checked = _diagnostics(capsys.readouterr().out, config)
    assert main(["render", str(config), "-o", str(tmp_path / "out")]) == 3
    rendered = _diagnostics(capsys.readouterr().err, config)
    assert main(["build", "--build-on", "host", "--offline", str(config)]) == 3
    built = _diagnostics(capsys.readouterr().err, config)

    line = 1 + config.read_text().splitlines().index("type: static")
    assert checked[-1].startswith(f"{config}:{line}:7: type: `type: static` installs")
    assert any("warning: hook.post-install: `rc-service nonesuch restart`" in d for d in checked)
    assert rendered == checked
    assert built == checked


def test_an_invalid_app_carries_its_warnings_too(tmp_path: Path) -> None:
    config = _site_without_nginx_conf(tmp_path)
    with pytest.raises(InvalidApp) as raised:
        prepare_app(config)
    assert [d.path for d in raised.value.warnings] == ["hook.post-install"]
    assert [d.path for d in raised.value.errors] == ["type"]


def test_a_bad_option_is_not_the_apps_fault() -> None:
    with pytest.raises(ConfigError) as raised:
        prepare_app(EXAMPLES / "pyweb" / "instellar.yml", version="1.0.0", release="x")
    assert not isinstance(raised.value, InvalidApp)


def test_a_prepared_app_is_named_built_at_its_epoch_and_linted() -> None:
    config = EXAMPLES / "pyweb" / "instellar.yml"
    prepared = prepare_app(config, name="demo", version="1.2.3", release=4, epoch=1700000000)
    assert (prepared.identity.name, prepared.identity.full_version) == ("demo", "1.2.3-r4")
    assert prepared.identity.epoch == 1700000000
    assert prepared.document.name == str(config)
    assert list(prepared.warnings) == sorted(prepared.warnings, key=lambda d: (d.line, d.column))
