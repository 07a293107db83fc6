"""pakman.cli.options: the option table's identity options reach prepare_app by field."""

from __future__ import annotations

from pathlib import Path

from pakman.cli import build_parser
from pakman.cli.options import identity_kwargs
from pakman.config.prepare import prepare_app

PYWEB = Path(__file__).parent.parent.parent / "examples" / "pyweb" / "instellar.yml"


def test_the_identity_options_name_the_package_render_and_check_prepare() -> None:
    for command in ("check", "render", "bootstrap", "build"):
        words = ["--package-name", "demo", "--organization", "acme", "--package-version", "1.2.3"]
        words += ["--release", "4", "--url", "https://example.com/demo"]
        args = build_parser(command).parse_args([command, *words])
        identity = prepare_app(PYWEB, **identity_kwargs(args)).identity
        assert (identity.organization, identity.name, identity.full_version) == (
            "acme",
            "demo",
            "1.2.3-r4",
        )
        assert identity.url == "https://example.com/demo"
