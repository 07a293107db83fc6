"""What the push tests share: an app, a built repository in HOME, a commit."""

from __future__ import annotations

from pathlib import Path

SHA = "0123456789abcdef0123456789abcdef01234567"
KITS = """
kits:
  - name: web
    main: true
    ports:
      - name: web
        target: 4000
        main: true
sizes:
  - name: small
    cpu: 1
    memory: 512
plans:
  - name: basic
page:
  title: An app
"""


def write_app(folder: Path, extra: str = "", stack: str = "stack: alpine/3.20\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instellar.yml").write_text(
        f"{stack}dependencies:\n  runtime: []\nbuild:\n  command: 'true'\n  destinations: [bin]\n{extra}"
    )
    return folder


def write_packages(home: Path) -> None:
    """A pakman repository laid out as `pakman build --repo ~/packages` leaves it."""
    publication = home / "packages/.publications/x86_64.1/x86_64"
    publication.mkdir(parents=True)
    (publication / "app-1.0.0-r3.apk").write_bytes(b"apk bytes")
    (publication / "APKINDEX.tar.gz").write_bytes(b"index bytes")
    (home / "packages/x86_64").symlink_to(".publications/x86_64.1/x86_64")
    (home / "packages.zip").write_bytes(b"zip bytes")
