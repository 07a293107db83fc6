"""The closure of requirements over synthetic index entries, as apk's solver would choose it."""

from __future__ import annotations

import pytest

from pakman.apk.index import IndexEntry
from pakman.apk.resolve import (
    Closure,
    Requirement,
    ResolveError,
    Universe,
    resolve,
)


def pkg(
    name: str,
    version: str,
    depends: str = "",
    provides: str = "",
    priority: int = 0,
    install_if: str = "",
) -> IndexEntry:
    return IndexEntry(
        identity=f"Q1{name}-{version}=",
        name=name,
        version=version,
        arch="x86_64",
        size=100,
        installed_size=1000,
        provider_priority=priority,
        depends=tuple(depends.split()),
        provides=tuple(provides.split()),
        install_if=tuple(install_if.split()),
    )


MAIN = (
    pkg("musl", "1.2.5-r0", provides="so:libc.musl-x86_64.so.1=1"),
    pkg("busybox", "1.36.1-r29", "so:libc.musl-x86_64.so.1", "cmd:busybox=1.36.1-r29"),
    pkg("zlib", "1.3.1-r1", "so:libc.musl-x86_64.so.1", "so:libz.so.1=1.3.1"),
    pkg("libcurl", "8.9.0-r0", "so:libc.musl-x86_64.so.1 so:libz.so.1", "so:libcurl.so.4=8.9.0"),
    pkg("curl", "8.9.0-r0", "so:libc.musl-x86_64.so.1 so:libcurl.so.4", "cmd:curl=8.9.0-r0"),
    pkg("bash", "5.2.26-r0", "/bin/sh so:libc.musl-x86_64.so.1", "cmd:bash=5.2.26-r0"),
    pkg("busybox-binsh", "1.36.1-r29", "busybox=1.36.1-r29", "/bin/sh cmd:sh=1.36.1-r29", 100),
    pkg("dash-binsh", "0.5.12-r3", "dash", "/bin/sh cmd:sh=0.5.12-r3", 60),
    pkg("dash", "0.5.12-r3", "so:libc.musl-x86_64.so.1"),
    pkg("nodejs", "20.15.1-r0", "so:libc.musl-x86_64.so.1", "cmd:node=20.15.1-r0"),
    pkg("nodejs", "18.20.1-r0", "so:libc.musl-x86_64.so.1", "cmd:node=18.20.1-r0"),
)
COMMUNITY = (
    pkg("nodejs-current", "22.4.1-r0", "so:libc.musl-x86_64.so.1", "cmd:node=22.4.1-r0"),
    pkg("mailer-a", "1.0-r0", "", "mail-agent"),
    pkg("mailer-b", "1.0-r0", "", "mail-agent"),
)


def universe(*extra: IndexEntry) -> Universe:
    return Universe.of([("main", (*MAIN, *extra)), ("community", COMMUNITY)])


def closure(*requests: str, extra: tuple[IndexEntry, ...] = ()) -> Closure:
    parsed = [(Requirement.parse(r), f"request[{i}]") for i, r in enumerate(requests)]
    return resolve(parsed, universe(*extra), "alpine v3.20 (main, community) for x86_64")


def versions(result: Closure) -> dict[str, str]:
    return {p.name: p.entry.version for p in result.packages}


def failure(*requests: str, extra: tuple[IndexEntry, ...] = ()) -> str:
    with pytest.raises(ResolveError) as caught:
        closure(*requests, extra=extra)
    return str(caught.value)


def test_a_plain_chain_through_so_provides_is_closed_and_sorted() -> None:
    result = closure("curl")
    assert result.names() == ["curl", "libcurl", "musl", "zlib"]
    assert result.met == {0: "curl"}
    libz = next(p for p in result.packages if p.name == "zlib")
    assert libz.repository == "main"
    assert libz.chain == (
        "request[0] `curl`",
        "curl 8.9.0-r0 `so:libcurl.so.4`",
        "libcurl 8.9.0-r0 `so:libz.so.1`",
    )


def test_a_so_name_is_met_by_the_package_that_provides_it() -> None:
    result = closure("so:libz.so.1")
    assert result.names() == ["musl", "zlib"]
    assert result.met == {0: "zlib"}


def test_a_pc_name_is_met_with_its_provided_version() -> None:
    dev = pkg("zlib-dev", "1.3.1-r1", "zlib=1.3.1-r1 pkgconfig", "pc:zlib=1.3.1")
    pkgconf = pkg("pkgconf", "2.2.0-r0", "so:libc.musl-x86_64.so.1", "pkgconfig=2.2.0")
    result = closure("pc:zlib>=1.3", extra=(dev, pkgconf))
    assert result.names() == ["musl", "pkgconf", "zlib", "zlib-dev"]
    assert "no version" in failure("pc:zlib>=1.4", extra=(dev, pkgconf))


def test_a_cmd_name_takes_the_highest_version_provided() -> None:
    # cmd:node is provided by nodejs 20, nodejs 18 and nodejs-current 22 (community)
    assert versions(closure("cmd:node"))["nodejs-current"] == "22.4.1-r0"
    assert "nodejs" not in versions(closure("cmd:node"))


@pytest.mark.parametrize(
    ("request_", "chosen"),
    [
        ("nodejs", "20.15.1-r0"),
        ("nodejs>=19", "20.15.1-r0"),
        ("nodejs>20.15.1-r0", None),
        ("nodejs<20", "18.20.1-r0"),
        ("nodejs<=18.20.1-r0", "18.20.1-r0"),
        ("nodejs=18.20.1-r0", "18.20.1-r0"),
        ("nodejs~18", "18.20.1-r0"),
        ("nodejs~20.15", "20.15.1-r0"),
        ("nodejs~19", None),
        ("nodejs><Q1nodejs-18.20.1-r0=", "18.20.1-r0"),
        ("cmd:node<21", "20.15.1-r0"),
    ],
)
def test_each_operator_constrains_the_version(request_: str, chosen: str | None) -> None:
    if chosen is None:
        message = failure(request_)
        assert "no version in alpine v3.20 (main, community) for x86_64 fits" in message
        assert "nodejs 20.15.1-r0 (main)" in message and "nodejs 18.20.1-r0 (main)" in message
    else:
        assert versions(closure(request_))["nodejs"] == chosen


def test_a_later_constraint_changes_the_earlier_choice() -> None:
    old_tool = pkg("old-tool", "1.0-r0", "nodejs<19")
    result = closure("nodejs", "old-tool", extra=(old_tool,))
    assert versions(result)["nodejs"] == "18.20.1-r0"


def test_constraints_no_version_meets_together_are_refused_with_both_chains() -> None:
    old_tool = pkg("old-tool", "1.0-r0", "nodejs<19")
    message = failure("nodejs>=20", "old-tool", extra=(old_tool,))
    assert "nodejs" in message
    assert "request[0] `nodejs>=20`" in message or "request[1] `old-tool`" in message
    assert "old-tool 1.0-r0 `nodejs<19`" in message


def test_provider_priority_chooses_among_providers_of_one_version() -> None:
    # /bin/sh has no version: busybox-binsh (k:100) beats dash-binsh (k:60)
    result = closure("bash")
    assert "busybox-binsh" in versions(result) and "dash-binsh" not in versions(result)
    assert "busybox" in versions(result)


def test_priority_yields_to_a_requirement_that_names_the_other_provider() -> None:
    for requests in (("dash-binsh", "bash"), ("bash", "dash-binsh")):
        result = closure(*requests)
        assert "dash-binsh" in versions(result) and "busybox-binsh" not in versions(result)


def test_two_providers_without_priority_or_version_are_not_chosen_between() -> None:
    message = failure("mail-agent")
    assert "`mail-agent` is provided by mailer-a, mailer-b" in message
    assert "name the one wanted" in message
    assert versions(closure("mail-agent", "mailer-b"))["mailer-b"] == "1.0-r0"


def test_a_versioned_provider_takes_over_a_name_at_a_higher_version() -> None:
    # as when Alpine renames a package: the new one provides the old name at its version
    renamed = pkg("zlib-ng", "2.2.0-r0", "", "zlib=2.2.0-r0 so:libz.so.1=2.2.0")
    assert versions(closure("zlib", extra=(renamed,))) == {"zlib-ng": "2.2.0-r0"}
    assert versions(closure("zlib=1.3.1-r1", extra=(renamed,)))["zlib"] == "1.3.1-r1"


def test_equal_versions_break_ties_by_repository_then_name() -> None:
    a = pkg("impl-b", "1.0-r0", provides="cmd:tool=1.0")
    b = pkg("impl-a", "1.0-r0", provides="cmd:tool=1.0")
    assert list(versions(closure("cmd:tool", extra=(a, b)))) == ["impl-a"]
    universe_ = Universe.of([("main", (a,)), ("community", (b,))])
    result = resolve([(Requirement.parse("cmd:tool"), "r")], universe_)
    assert result.names() == ["impl-b"]


def test_a_conflict_is_refused_naming_both_chains() -> None:
    message = failure("!zlib", "curl")
    assert "`!zlib`" in message and "zlib 1.3.1-r1" in message
    assert "request[0] `!zlib`" in message
    assert "libcurl 8.9.0-r0 `so:libz.so.1`" in message


def test_a_conflict_declared_by_a_package_after_the_fact_names_both_chains() -> None:
    hater = pkg("no-zlib", "1.0-r0", "!zlib")
    message = failure("zlib", "no-zlib", extra=(hater,))
    assert "conflicts with zlib 1.3.1-r1" in message
    assert message.startswith("`no-zlib` cannot be installed: no-zlib 1.0-r0 conflicts")
    assert "brought in by request[0] `zlib`" in message
    # the other way round: zlib is refused when it comes after no-zlib
    message = failure("no-zlib", "zlib", extra=(hater,))
    assert "`zlib` conflicts with" not in message
    assert "no-zlib 1.0-r0 `!zlib`" in message


def test_a_versioned_conflict_only_rules_out_fitting_versions() -> None:
    assert versions(closure("!nodejs>=20", "nodejs"))["nodejs"] == "18.20.1-r0"


def test_a_conflict_that_rules_out_a_dependency_is_told_where_it_is_written() -> None:
    with pytest.raises(ResolveError) as caught:
        closure("curl", "!zlib")
    (problem,) = caught.value.problems
    assert problem.request == 1
    assert problem.message == (
        "`so:libz.so.1` (required by request[0] `curl` -> curl 8.9.0-r0 `so:libcurl.so.4` -> "
        "libcurl 8.9.0-r0 `so:libz.so.1`) cannot be installed: zlib 1.3.1-r1 conflicts with "
        "`!zlib` from request[1] `!zlib`"
    )


def test_a_conflict_makes_another_provider_be_chosen() -> None:
    result = closure("!busybox-binsh", "bash")
    assert "dash-binsh" in versions(result) and "busybox-binsh" not in versions(result)


def test_a_missing_dependency_is_located_by_its_chain() -> None:
    broken = pkg("broken", "1.0-r0", "so:libgone.so.3")
    message = failure("curl", "broken", extra=(broken,))
    assert message == (
        "`so:libgone.so.3` is not a package of alpine v3.20 (main, community) for x86_64, "
        "nor provided by one (required by request[1] `broken` -> broken 1.0-r0 `so:libgone.so.3`)"
    )
    with pytest.raises(ResolveError) as caught:
        closure("curl", "broken", extra=(broken,))
    assert [p.request for p in caught.value.problems] == [1]


def test_cycles_between_dependencies_are_allowed() -> None:
    a = pkg("cyc-a", "1-r0", "cyc-b")
    b = pkg("cyc-b", "1-r0", "cyc-c so:libc.musl-x86_64.so.1")
    c = pkg("cyc-c", "1-r0", "cyc-a")
    result = closure("cyc-a", extra=(a, b, c))
    assert result.names() == ["cyc-a", "cyc-b", "cyc-c", "musl"]
    assert result.requires["cyc-b"] == ("cyc-c", "musl")
    # entered at cyc-a (first by name): cyc-c (its cyc-a is being placed), musl, cyc-b, cyc-a
    assert result.install_order() == ["cyc-c", "musl", "cyc-b", "cyc-a"]


def test_each_package_is_installed_after_what_it_requires() -> None:
    result = closure("curl", "bash")
    order = result.install_order()
    assert sorted(order) == result.names()
    for name, required in result.requires.items():
        assert all(order.index(r) < order.index(name) for r in required)
    assert result.requires["curl"] == ("libcurl", "musl")
    assert result.requires["bash"] == ("busybox-binsh", "musl")


def test_two_packages_cannot_provide_one_name_at_a_version() -> None:
    message = failure("busybox-binsh", "dash-binsh")
    assert "both provide cmd:sh" in message


def test_install_if_adds_a_package_once_its_conditions_are_met() -> None:
    completion = pkg("curl-doc", "8.9.0-r0", install_if="curl=8.9.0-r0 docs")
    docs = pkg("docs", "0.2-r6")
    assert "curl-doc" not in versions(closure("curl", extra=(completion, docs)))
    result = closure("curl", "docs", extra=(completion, docs))
    assert "curl-doc" in versions(result)
    doc = next(p for p in result.packages if p.name == "curl-doc")
    assert doc.chain == ("install_if `curl=8.9.0-r0 docs`",)


def test_the_closure_does_not_depend_on_the_order_of_the_index() -> None:
    reordered = Universe.of([("main", tuple(reversed(MAIN))), ("community", COMMUNITY)])
    requests = [(Requirement.parse(r), "r") for r in ("bash", "curl", "cmd:node")]
    assert resolve(requests, reordered) == resolve(requests, universe())


@pytest.mark.parametrize("text", ["", "a b", "a>>1", "!", "a=<1"])
def test_what_is_not_a_dependency_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Requirement.parse(text)


def test_a_requirement_reads_back_as_written() -> None:
    for text in ("so:libc.musl-x86_64.so.1", "!foo", "nodejs>=20", "x~1.2", "y><Q1abc="):
        assert str(Requirement.parse(text)) == text
