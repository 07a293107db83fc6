"""The closure of a set of requirements over repository indexes, chosen as apk's solver chooses.

Facts taken from apk-tools (src/solver.c, doc/apk-world.5, doc/apk-package.5):

- A requirement is `name`, `name<op>version` (op: `<`, `<=`, `=`, `>=`, `>`,
  `~` for a version prefix, `><` for an identity `Q1...`), or `!name[<op>version]`,
  a conflict: no package of that name (or providing it, at a fitting version)
  may be installed.
- A name is met by a package of that name (at its version) or by a package
  that provides it (`p:`): `so:libfoo.so.1=1.2.3`, `cmd:bash=5.2`, or a
  provides without a version, which meets only a requirement without one.
- At most one package of each name is installed, and two packages cannot
  both provide one name at a version (apk: "conflict: providing same name").
- Among the providers of a name, apk prefers (compare_providers): the
  highest version of the requested name (the package's own, or the version
  it provides it at), then, among packages of one name, the highest package
  version, then the highest provider priority (`k:`), then the first
  repository (main before community). A provider without a version is
  chosen automatically only when it has a provider priority; two such
  providers without one are not chosen between: that is an error naming
  them, and the user names the one wanted (apk: "unable to select packages").
  pakman breaks a last tie by package name, so the result never depends on
  the order of an index.
- The dependencies (`D:`) of a chosen package are required in turn; cycles
  are allowed (a package chosen once is not chosen again).
- A package whose `install_if` (`i:`) is met by what is installed is
  installed too (e.g. `<pkg>-openrc` once `openrc` and `<pkg>` are).

The solver is greedy, in the order requirements are given and then
breadth-first, with one refinement: when a requirement cannot be met by the
package already chosen for its name (`foo` took foo 3, then `bar` needs
`foo<3`), the constraint is applied from the start and the closure computed
again, so the first choice takes the later constraints into account. A
conflict is refused, with the chain of requirements that brought in each side.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pakman.apk.index import IndexEntry
from pakman.apk.version import compare_versions, satisfies, version_key

_REQUIREMENT = re.compile(r"(!?)([^<>=~!\s]+)((?:[<>=~]{1,2})(\S+))?\Z")
_OPERATORS = ("<", "<=", "=", ">=", ">", "~", "~=", "><")
MAX_RESTARTS = 64  # constraints learnt before giving up (each restart learns one)


class ResolveError(Exception):
    """The requirements cannot be met; `problems` are the reasons, one per line."""

    def __init__(self, problems: Sequence[ResolveProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(p.message for p in self.problems))


@dataclass(frozen=True)
class ResolveProblem:
    """One reason a closure cannot be made, and the requirement of the request it goes back to."""

    message: str
    request: int  # the index of the request whose chain it is (-1: not one request's)


@dataclass(frozen=True)
class Requirement:
    """`name`, `name>=1.2`, `name~1.2`, `name><Q1...`, `!name`: what a `D:` word or a request says."""

    name: str
    constraint: str = ""  # the operator and version, e.g. ">=1.2"; "" for any
    conflict: bool = False

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """Read one dependency word; raises ValueError when it is not one."""
        match = _REQUIREMENT.match(text.strip())
        if not match:
            raise ValueError(f"`{text}` is not a dependency (name, name>=1.2, !name, ...)")
        constraint = match[3] or ""
        if constraint:
            operator = constraint[: len(constraint) - len(match[4])]
            if operator not in _OPERATORS:
                raise ValueError(f"`{text}`: unknown operator `{operator}`")
        return cls(match[2], constraint, bool(match[1]))

    def __str__(self) -> str:
        return f"{'!' if self.conflict else ''}{self.name}{self.constraint}"

    def fits(self, version: str, identity: str = "") -> bool:
        """True when a provider at `version` ("" for a provides without one) meets it."""
        if self.constraint.startswith("><"):
            return identity == self.constraint[2:]
        if not version:
            return not self.constraint  # as apk: an unversioned provides meets no constraint
        return satisfies(version, self.constraint)


@dataclass(frozen=True)
class Candidate:
    """A package of a repository, as one of the providers of a name."""

    entry: IndexEntry
    repository: str
    order: int  # the repository's position: lower is preferred
    version: str  # the version it provides the name at ("" for a bare provides)

    @property
    def label(self) -> str:
        return f"{self.entry.name} {self.entry.version} ({self.repository})"


@dataclass(frozen=True)
class Resolved:
    """One package of the closure, with the chain of requirements that brought it in."""

    entry: IndexEntry
    repository: str
    chain: tuple[str, ...]  # from the request down to the requirement it meets

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class Closure:
    """Every package the requests need, sorted by name."""

    packages: tuple[Resolved, ...]
    # per request (by position; conflicts have none): the package that met it
    met: Mapping[int, str] = field(default_factory=dict)
    # per package: the packages of the closure that meet its dependencies, sorted
    requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def install_order(self) -> list[str]:
        """Package names, each after what it requires (as apk installs them); a cycle is
        entered at its first name in sorted order, so the order is always the same."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1: being visited, 2: placed
        for root in sorted(self.requires):
            stack = [(root, iter(self.requires[root]))]
            state[root] = state.get(root) or 1
            if state[root] == 2:
                continue
            while stack:
                name, pending = stack[-1]
                for required in pending:
                    if required not in state:
                        state[required] = 1
                        stack.append((required, iter(self.requires.get(required, ()))))
                        break
                else:
                    stack.pop()
                    state[name] = 2
                    order.append(name)
        return order

    def names(self) -> list[str]:
        return [p.name for p in self.packages]


class Provider(Protocol):
    """A way an index meets a name: its package, and the version it meets the name at."""

    @property
    def entry(self) -> IndexEntry: ...

    @property
    def version(self) -> str: ...


class _Provided(NamedTuple):
    entry: IndexEntry
    version: str


# (repository, providers by name, entries) of one index
Source = tuple[str, Mapping[str, Sequence[Provider]], Iterable[IndexEntry]]


class Universe:
    """The providers of every name in a set of repository indexes, in order of preference.

    Candidates are made only for the names a closure asks about; indexes
    already read by name (pakman.apk.mirror's offers) are used as they are.
    """

    def __init__(self, sources: Iterable[Source]) -> None:
        self._sources: list[tuple[int, str, Mapping[str, Sequence[Provider]]]] = []
        # packages with an `install_if`, with its conditions read (those apk cannot read left out)
        self.install_if: list[tuple[Candidate, tuple[Requirement, ...]]] = []
        self._candidates: dict[str, list[Candidate]] = {}
        for order, (repository, providers, entries) in enumerate(sources):
            self._sources.append((order, repository, providers))
            for entry in entries:
                if not entry.install_if:
                    continue
                try:
                    conditions = tuple(Requirement.parse(w) for w in entry.install_if)
                except ValueError:
                    continue  # apk ignores what it cannot read here too
                own = Candidate(entry, repository, order, entry.version)
                self.install_if.append((own, conditions))

    @classmethod
    def of(cls, repositories: Iterable[tuple[str, Iterable[IndexEntry]]]) -> Universe:
        """The providers in `(repository, entries)` pairs, in order of preference."""
        sources: list[Source] = []
        for repository, entries in repositories:
            entries = tuple(entries)
            providers: dict[str, list[Provider]] = {}
            for entry in entries:
                providers.setdefault(entry.name, []).append(_Provided(entry, entry.version))
                for word in entry.provides:
                    name, _, version = word.partition("=")
                    providers.setdefault(name, []).append(_Provided(entry, version))
            sources.append((repository, providers, entries))
        return cls(sources)

    def candidates(self, name: str) -> list[Candidate]:
        """Every package of that name and every package providing it."""
        found = self._candidates.get(name)
        if found is None:
            found = [
                Candidate(provider.entry, repository, order, provider.version)
                for order, repository, providers in self._sources
                for provider in providers.get(name, ())
            ]
            self._candidates[name] = found
        return found


def prefer(a: Candidate, b: Candidate) -> int:
    """> 0 when apk would choose `a` over `b` as the provider of one name (see the module's notes)."""
    by_version = compare_versions(a.version, b.version) if a.version and b.version else 0
    if by_version == 0 and bool(a.version) != bool(b.version):
        by_version = 1 if a.version else -1
    if by_version:
        return by_version
    if a.entry.name == b.entry.name:
        by_package = compare_versions(a.entry.version, b.entry.version)
        if by_package:
            return by_package
    if a.entry.provider_priority != b.entry.provider_priority:
        return 1 if a.entry.provider_priority > b.entry.provider_priority else -1
    if a.order != b.order:
        return 1 if a.order < b.order else -1
    if a.entry.name != b.entry.name:
        return 1 if a.entry.name < b.entry.name else -1
    return 0


def auto_selectable(candidate: Candidate) -> bool:
    """apk chooses a bare provides (no version) only when its package has a provider priority."""
    return bool(candidate.version) or candidate.entry.provider_priority > 0


def _provided(entry: IndexEntry) -> list[tuple[str, str]]:
    """Every name a package meets, with the version it meets it at."""
    names = [(entry.name, entry.version)]
    for word in entry.provides:
        name, _, version = word.partition("=")
        names.append((name, version))
    return names


class _Restart(Exception):
    def __init__(self, name: str, requirement: Requirement, chain: tuple[str, ...]) -> None:
        self.name, self.requirement, self.chain = name, requirement, chain


class _Failed(Exception):
    def __init__(self, problem: ResolveProblem) -> None:
        self.problem = problem


def _chain_text(chain: Sequence[str]) -> str:
    return " -> ".join(chain)


class _Solver:
    def __init__(
        self,
        universe: Universe,
        requests: Sequence[tuple[Requirement, str]],
        learnt: Mapping[str, Sequence[tuple[Requirement, tuple[str, ...]]]],
        where: str,
    ) -> None:
        self.universe = universe
        self.requests = requests
        self.learnt = learnt
        self.where = where
        self.chosen: dict[str, Resolved] = {}
        self.by_name: dict[str, list[tuple[Resolved, str]]] = {}  # name -> (package, version)
        self.conflicts: list[tuple[Requirement, tuple[str, ...], int]] = []
        self.met: dict[int, str] = {}
        # apk chooses a bare provides whose package is itself required
        self.requested = {r.name for r, _ in requests if not r.conflict}

    def run(self) -> Closure:
        queue: deque[tuple[Requirement, tuple[str, ...], int]] = deque()
        for position, (requirement, origin) in enumerate(self.requests):
            chain: tuple[str, ...] = (f"{origin} `{requirement}`",)
            if requirement.conflict:
                self._add_conflict(requirement, chain, position)
            else:
                queue.append((requirement, chain, position))
        while True:
            while queue:
                requirement, chain, request = queue.popleft()
                package = self._require(requirement, chain, request, queue)
                if len(chain) == 1 and request >= 0:
                    self.met.setdefault(request, package)
            if not self._install_if(queue):
                break
        packages = tuple(self.chosen[name] for name in sorted(self.chosen))
        requires = {}
        for resolved in packages:
            needs = set()
            for word in resolved.entry.depends:
                if not word.startswith("!"):
                    met = self._meets(Requirement.parse(word))
                    if met is not None and met.name != resolved.name:
                        needs.add(met.name)
            requires[resolved.name] = tuple(sorted(needs))
        return Closure(packages, dict(sorted(self.met.items())), requires)

    def _meets(self, requirement: Requirement) -> Resolved | None:
        for resolved, version in self.by_name.get(requirement.name, ()):
            if requirement.fits(version, resolved.entry.identity):
                return resolved
        return None

    def _require(
        self,
        requirement: Requirement,
        chain: tuple[str, ...],
        request: int,
        queue: deque[tuple[Requirement, tuple[str, ...], int]],
    ) -> str:
        name = requirement.name
        found = self._meets(requirement)
        if found is not None:
            return found.name
        holder = self.chosen.get(name)
        if holder is not None or any(v for _, v in self.by_name.get(name, ())):
            # the name is taken at a version that does not fit: choose again, knowing this
            raise _Restart(name, requirement, chain)
        candidates = self.universe.candidates(name)
        fitting = [c for c in candidates if requirement.fits(c.version, c.entry.identity)]
        usable = [c for c in fitting if self._allowed(c)]
        selectable = [c for c in usable if auto_selectable(c) or c.entry.name in self.requested]
        if not selectable:
            raise _Failed(self._why_not(requirement, chain, request, candidates, fitting, usable))
        wanted = [c for c in selectable if c.entry.name != name and c.entry.name in self.requested]
        selectable = wanted or selectable  # a provider the requests name is the one wanted
        best = selectable[0]
        for candidate in selectable[1:]:
            if prefer(candidate, best) > 0:
                best = candidate
        self._choose(best, chain, request, queue)
        return best.entry.name

    def _allowed(self, candidate: Candidate) -> bool:
        """Not ruled out by a learnt constraint, a name taken, or a conflict."""
        entry = candidate.entry
        if entry.name in self.chosen:
            return False
        for name, version in _provided(entry):
            for learnt, _ in self.learnt.get(name, ()):
                if not learnt.fits(version, entry.identity):
                    return False
            if version and any(v for _, v in self.by_name.get(name, ())):
                return False  # apk: two packages cannot provide one name at a version
            if self._conflicting(name, version, entry.identity) is not None:
                return False
        return self._refuses(entry) is None

    def _refuses(self, entry: IndexEntry) -> Resolved | None:
        """A chosen package that one of `entry`'s own conflicts (`!name` in `D:`) rules out."""
        for word in entry.depends:
            if word.startswith("!"):
                try:
                    conflict = Requirement.parse(word)
                except ValueError:
                    continue  # reported when the package is chosen
                found = self._meets(Requirement(conflict.name, conflict.constraint))
                if found is not None:
                    return found
        return None

    def _conflicting(
        self, name: str, version: str, identity: str
    ) -> tuple[Requirement, tuple[str, ...], int] | None:
        for conflict in self.conflicts:
            requirement = conflict[0]
            if requirement.name == name and (
                not requirement.constraint or requirement.fits(version, identity)
            ):
                return conflict
        return None

    def _add_conflict(self, requirement: Requirement, chain: tuple[str, ...], request: int) -> None:
        for resolved, version in self.by_name.get(requirement.name, ()):
            if not requirement.constraint or requirement.fits(version, resolved.entry.identity):
                raise _Failed(self._conflict_problem(requirement, chain, request, resolved))
        self.conflicts.append((requirement, chain, request))

    def _conflict_problem(
        self, requirement: Requirement, chain: tuple[str, ...], request: int, resolved: Resolved
    ) -> ResolveProblem:
        what = f"{resolved.entry.name} {resolved.entry.version}"
        return ResolveProblem(
            f"`{requirement}` conflicts with {what}: the conflict comes from "
            f"{_chain_text(chain)}; {what} from {_chain_text(resolved.chain)}",
            request,
        )

    def _choose(
        self,
        candidate: Candidate,
        chain: tuple[str, ...],
        request: int,
        queue: deque[tuple[Requirement, tuple[str, ...], int]],
    ) -> None:
        entry = candidate.entry
        resolved = Resolved(entry, candidate.repository, chain)
        self.chosen[entry.name] = resolved
        for name, version in _provided(entry):
            self.by_name.setdefault(name, []).append((resolved, version))
        label = f"{entry.name} {entry.version}"
        for word in entry.depends:
            try:
                requirement = Requirement.parse(word)
            except ValueError as exc:
                raise _Failed(
                    ResolveProblem(f"{label} ({candidate.repository}): {exc}", request)
                ) from None
            if requirement.conflict:
                self._add_conflict(requirement, (*chain, f"{label} `{word}`"), request)
            else:
                queue.append((requirement, (*chain, f"{label} `{word}`"), request))

    def _install_if(self, queue: deque[tuple[Requirement, tuple[str, ...], int]]) -> bool:
        """Queue the packages whose `install_if` the closure now meets; True when there were any."""
        best: dict[str, Candidate] = {}
        for candidate, conditions in self.universe.install_if:
            entry = candidate.entry
            if entry.name in self.chosen or not all(self._holds(c) for c in conditions):
                continue
            if self._allowed(candidate):
                current = best.get(entry.name)
                if current is None or prefer(candidate, current) > 0:
                    best[entry.name] = candidate
        for name in sorted(best):
            candidate = best[name]
            chain = (f"install_if `{' '.join(candidate.entry.install_if)}`",)
            self._choose(candidate, chain, -1, queue)
        return bool(best)

    def _holds(self, condition: Requirement) -> bool:
        met = self._meets(Requirement(condition.name, condition.constraint))
        return met is None if condition.conflict else met is not None

    def _why_not(
        self,
        requirement: Requirement,
        chain: tuple[str, ...],
        request: int,
        candidates: list[Candidate],
        fitting: list[Candidate],
        usable: list[Candidate],
    ) -> ResolveProblem:
        via = f" (required by {_chain_text(chain)})" if len(chain) > 1 else ""
        name = requirement.name
        if not candidates:
            return ResolveProblem(
                f"`{name}` is not a package of {self.where}, nor provided by one{via}", request
            )
        if not fitting:
            has = ", ".join(sorted({_offer(c, name) for c in candidates}, key=_offer_order))
            return ResolveProblem(
                f"`{requirement}`: no version in {self.where} fits{via}; it has {has}", request
            )
        if not usable:
            reasons = sorted({self._excluded(c) for c in fitting})
            # ruled out by a conflict someone wrote: the problem is theirs, told where they wrote it
            by_conflict = {self._conflict_request(c) for c in fitting}
            if len(by_conflict) == 1 and (conflict_request := by_conflict.pop()) is not None:
                request = conflict_request
            return ResolveProblem(
                f"`{requirement}`{via} cannot be installed: {'; '.join(reasons)}", request
            )
        names = ", ".join(sorted({c.entry.name for c in usable}))
        return ResolveProblem(
            f"`{name}`{via} is provided by {names}, none with a provider priority or a "
            f"version, so apk would not choose; name the one wanted",
            request,
        )

    def _conflict_request(self, candidate: Candidate) -> int | None:
        """The request whose conflict rules the candidate out, if one does."""
        for name, version in _provided(candidate.entry):
            conflict = self._conflicting(name, version, candidate.entry.identity)
            if conflict is not None:
                return conflict[2]
        return None

    def _excluded(self, candidate: Candidate) -> str:
        entry = candidate.entry
        label = f"{entry.name} {entry.version}"
        held = self.chosen.get(entry.name)
        if held is not None:
            return (
                f"{label} cannot replace {held.entry.name} {held.entry.version}, "
                f"brought in by {_chain_text(held.chain)}"
            )
        for name, version in _provided(entry):
            for learnt, learnt_chain in self.learnt.get(name, ()):
                if not learnt.fits(version, entry.identity):
                    return f"{label}: {_chain_text(learnt_chain)} requires `{learnt}`"
            conflict = self._conflicting(name, version, entry.identity)
            if conflict is not None:
                return f"{label} conflicts with `{conflict[0]}` from {_chain_text(conflict[1])}"
            for other, other_version in self.by_name.get(name, ()):
                if version and other_version:
                    return (
                        f"{label} and {other.entry.name} {other.entry.version} (brought in by "
                        f"{_chain_text(other.chain)}) both provide {name}"
                    )
        refused = self._refuses(entry)
        if refused is not None:
            return (
                f"{label} conflicts with {refused.entry.name} {refused.entry.version}, "
                f"brought in by {_chain_text(refused.chain)}"
            )
        return f"{label} is not allowed"


def _offer(candidate: Candidate, name: str) -> str:
    entry = candidate.entry
    where = f"{entry.name} {entry.version} ({candidate.repository})"
    if entry.name == name:
        return where
    return f"{name}{'=' + candidate.version if candidate.version else ''} from {where}"


def _offer_order(text: str) -> tuple[str, object]:
    return (text.split(" ")[0], version_key(text.split(" ")[1] if " " in text else ""))


def resolve(
    requests: Sequence[tuple[Requirement, str]], universe: Universe, where: str = "the indexes"
) -> Closure:
    """The closure of `requests` (each with where it comes from, e.g. `dependencies.build[0]`).

    Raises ResolveError naming, for a missing name, an unmet constraint or a
    conflict, the chain of requirements that led there. `where` describes
    the indexes in messages (e.g. `alpine v3.20 (main, community) for x86_64`).
    """
    learnt: dict[str, list[tuple[Requirement, tuple[str, ...]]]] = {}
    for _ in range(MAX_RESTARTS):
        solver = _Solver(universe, requests, learnt, where)
        try:
            return solver.run()
        except _Failed as failed:
            raise ResolveError([failed.problem]) from None
        except _Restart as restart:
            known = learnt.setdefault(restart.name, [])
            if any(r == restart.requirement for r, _ in known):
                raise ResolveError([_clash(solver, restart)]) from None
            known.append((restart.requirement, restart.chain))
    raise ResolveError([ResolveProblem("the requirements could not be settled", -1)])


def _clash(solver: _Solver, restart: _Restart) -> ResolveProblem:
    held = [r for r, _ in solver.by_name.get(restart.name, ())]
    other = held[0] if held else None
    what = f"{other.entry.name} {other.entry.version}" if other else restart.name
    why = f" (brought in by {_chain_text(other.chain)})" if other else ""
    return ResolveProblem(
        f"`{restart.requirement}` (required by {_chain_text(restart.chain)}) does not fit "
        f"{what}{why}, and no choice meets both",
        -1,
    )
