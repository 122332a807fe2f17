"""apt on the simulated nodes: what each node's configured repository holds, and installing from it.

The repository (scenario knobs `apt_versions` and `apt_versions_by_node`) is a list of versions per package;
the installed packages are the node's entries in `<state>/sim/packages.json` (what `dpkg-query` reports).
Only the coupling that matters for LINSTOR is modelled (linstor.md 13.1, 14): `linstor-controller` and
`linstor-satellite` Depend on `linstor-common (= same version)`. Installing restarts the upgraded services,
as Debian packages do (linstor.md 6.4), so a satellite then runs the new version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import debversion, satellite, services, systemd
from .scenario import linstor_package_version
from .state import SimState

COMMON = "linstor-common"
# Packages that Depend on linstor-common (= their own version), and the unit each one restarts.
COUPLED = {"linstor-controller": services.CONTROLLER_UNIT, "linstor-satellite": satellite.SATELLITE_UNIT}
LINSTOR_PACKAGES = (COMMON, *COUPLED)
# The LINBIT public repository for PVE 8 (linstor.md section 10), as apt names its index.
REPOSITORY_URI = "https://packages.linbit.com/public"
REPOSITORY_DIST = "proxmox-8/drbd-9"
ORIGIN = "LINBIT:proxmox-8"
ARCH = "amd64"


class AptError(Exception):
    """apt's own failure: `message` on stderr, exit `code` (100 for errors, as apt-get)."""

    def __init__(self, message: str, code: int = 100) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def repository(state: SimState, node: str) -> dict[str, list[str]]:
    """Package -> versions the node's repository holds: the cluster's LINSTOR version unless a knob says more."""
    scenario = state.scenario_json()
    own = linstor_package_version(str(scenario.get("linstor_version", "1.33")))
    repo: dict[str, list[str]] = {name: [own] for name in LINSTOR_PACKAGES}
    repo.update({k: list(v) for k, v in dict(scenario.get("apt_versions") or {}).items()})
    repo.update({k: list(v) for k, v in dict((scenario.get("apt_versions_by_node") or {}).get(node, {})).items()})
    return repo


def installed(state: SimState, node: str) -> dict[str, str]:
    return dict(state.read("packages.json", {}).get(node, {}))


def candidate(state: SimState, node: str, package: str) -> str | None:
    """The version `apt-get install <pkg>` picks: the newest held, never below the installed one."""
    versions = list(repository(state, node).get(package, []))
    current = installed(state, node).get(package)
    if current is not None:
        versions.append(current)
    return max(versions, key=debversion.sort_key) if versions else None


@dataclass
class Request:
    """`apt-get install` options the fake understands."""

    packages: list[str] = field(default_factory=list)
    simulate: bool = False
    only_upgrade: bool = False
    allow_downgrades: bool = False
    assume_yes: bool = False


@dataclass
class Plan:
    changes: dict[str, tuple[str | None, str]]  # package -> (installed version or None, new version)
    skipped: list[str]


def plan(state: SimState, node: str, request: Request) -> Plan:
    """What apt would do, or AptError as apt refuses: unknown package or version, unmet dependencies."""
    repo = repository(state, node)
    current = installed(state, node)
    wanted: dict[str, str] = {}
    skipped: list[str] = []
    for spec in request.packages:
        name, _, version = spec.partition("=")
        if name not in repo and name not in current:
            raise AptError(f"E: Unable to locate package {name}")
        if version and version not in repo.get(name, []) and version != current.get(name):
            raise AptError(f"E: Version '{version}' for '{name}' was not found")
        if request.only_upgrade and name not in current:
            skipped.append(name)
            continue
        chosen = version or candidate(state, node, name)
        assert chosen is not None
        wanted[name] = chosen
    result = {**current, **wanted}
    _resolve_coupling(state, node, result, wanted, current)
    changes = {name: (current.get(name), version) for name, version in result.items() if current.get(name) != version}
    return Plan(changes=changes, skipped=skipped)


def _resolve_coupling(
    state: SimState, node: str, result: dict[str, str], wanted: dict[str, str], current: dict[str, str]
) -> None:
    """linstor-{controller,satellite} (= v) need linstor-common (= v): apt upgrades a dependency or a dependant
    to its candidate when that satisfies it (never downgrades on its own), and otherwise gives up."""
    broken: list[str] = []
    for package in COUPLED:
        if package not in result or COMMON not in result or result[package] == result[COMMON]:
            continue
        need = result[package]
        if COMMON not in wanted and candidate(state, node, COMMON) == need and _is_upgrade(current.get(COMMON), need):
            result[COMMON] = need
            continue
        if package not in wanted:
            best = candidate(state, node, package)
            if best == result[COMMON] and _is_upgrade(current.get(package), result[COMMON]):
                result[package] = result[COMMON]
                continue
        broken.append(f" {package} : Depends: {COMMON} (= {need}) but {result[COMMON]} is to be installed")
    if broken:
        # apt's resolver text (apt-private-install.cc, "ShowBroken"); exit 100.
        raise AptError(
            "Some packages could not be installed. This may mean that you have\n"
            "requested an impossible situation or if you are using the unstable\n"
            "distribution that some required packages have not yet been created\n"
            "or been moved out of Incoming.\n"
            "The following information may help to resolve the situation:\n\n"
            "The following packages have unmet dependencies:\n" + "\n".join(broken) + "\n"
            "E: Unable to correct problems, you have held broken packages."
        )


def _is_upgrade(old: str | None, new: str) -> bool:
    return old is None or debversion.compare(new, old) > 0


def downgrades(changes: dict[str, tuple[str | None, str]]) -> list[str]:
    return [name for name, (old, new) in changes.items() if old is not None and debversion.compare(new, old) < 0]


def inst_lines(changes: dict[str, tuple[str | None, str]]) -> list[str]:
    """`apt-get -s` lines: `Inst <pkg> [<old>] (<new> <origin> [<arch>])`, then one `Conf` line each."""
    tail = {name: f"({new} {ORIGIN} [{ARCH}])" for name, (_, new) in changes.items()}
    inst = [f"Inst {name} [{old}] {tail[name]}" if old else f"Inst {name} {tail[name]}"
            for name, (old, _) in sorted(changes.items())]  # fmt: skip
    return inst + [f"Conf {name} {tail[name]}" for name in sorted(changes)]


def apply(state: SimState, node: str, changes: dict[str, tuple[str | None, str]]) -> list[tuple[str, str]]:
    """Write the new versions to the node's dpkg status and restart what the upgraded packages run.

    Returns (package, systemd's error text) for each service that failed to come back (dpkg then fails). Like
    deb-systemd-invoke, a service is (re)started only when its unit is enabled or already running.
    """
    failures: list[tuple[str, str]] = []
    with state.locked():
        packages = state.read("packages.json", {})
        packages.setdefault(node, {}).update({name: new for name, (_, new) in changes.items()})
        state.write("packages.json", packages)
        # The maintainer scripts run `systemctl daemon-reload` before restarting.
        systemd.daemon_reload(state, node)
        for package, unit in COUPLED.items():
            if package not in changes or not systemd.exists(state, node, unit):
                continue
            if not systemd.is_active(state, node, unit) and systemd.is_enabled(state, node, unit) != "enabled":
                continue
            services.stop_unit(state, node, unit)
            try:
                services.start_unit(state, node, unit)
            except services.UnitFailed as failed:
                failures.append((package, failed.message))
    return failures
