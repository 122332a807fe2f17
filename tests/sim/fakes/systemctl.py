"""Fake `systemctl` (systemd 252, Debian 12): enable, disable, start, stop, restart, is-active,
is-enabled, daemon-reload, show, cat, status, list-units (minimal)."""

from __future__ import annotations

import sys

from .. import reactor, services, systemd
from ._cli import Context, Fail, run, warn

RELOAD_WARNING = ("Warning: The unit file, source configuration file or drop-ins of {unit} changed on disk. "
                  "Run 'systemctl daemon-reload' to reload units.")  # fmt: skip


def _units(ctx: Context, names: list[str]) -> list[str]:
    return [systemd.normalize(name) for name in names]


def _warn_stale(ctx: Context, unit: str) -> None:
    if systemd.needs_reload(ctx.state, ctx.node, unit):
        warn(RELOAD_WARNING.format(unit=unit))


def _enable(ctx: Context, units: list[str], now: bool) -> int:
    for unit in units:
        if not systemd.exists(ctx.state, ctx.node, unit):
            raise Fail(f"Failed to enable unit: Unit file {unit} does not exist.", 1)
        targets = systemd.wanted_by(ctx.state, ctx.node, unit)
        if not targets:
            warn("The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\n"
                 "Alias= settings in the [Install] section, and DefaultInstance= for template\n"
                 "units). This means they are not meant to be enabled or disabled using systemctl.")  # fmt: skip
            continue
        source = f"/lib/systemd/system/{systemd.template_of(unit) or unit}"
        for link in systemd.enablement_links(ctx.state, ctx.node, unit):
            if link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
            shown = "/" + str(link.relative_to(ctx.root))
            warn(f"Created symlink {shown} \u2192 {source}.")
    if now:
        return _start(ctx, units)
    return 0


def _disable(ctx: Context, units: list[str], now: bool) -> int:
    for unit in units:
        if not systemd.exists(ctx.state, ctx.node, unit):
            raise Fail(f"Failed to disable unit: Unit file {unit} does not exist.", 1)
        for link in systemd.enablement_links(ctx.state, ctx.node, unit):
            if link.is_symlink():
                link.unlink()
                warn(f'Removed "/{link.relative_to(ctx.root)}".')
    if now:
        return _stop(ctx, units)
    return 0


def _start(ctx: Context, units: list[str]) -> int:
    for unit in units:
        if not systemd.exists(ctx.state, ctx.node, unit):
            raise Fail(f"Failed to start {unit}: Unit {unit} not found.", 5)
        _warn_stale(ctx, unit)
        systemd.mark_loaded(ctx.state, ctx.node, unit)
        try:
            services.start_unit(ctx.state, ctx.node, unit)
        except services.UnitFailed as err:
            raise Fail(err.message, err.code) from err
    return 0


def _stop(ctx: Context, units: list[str]) -> int:
    for unit in units:
        if not systemd.exists(ctx.state, ctx.node, unit):
            raise Fail(f"Failed to stop {unit}: Unit {unit} not loaded.", 5)
        _warn_stale(ctx, unit)
        services.stop_unit(ctx.state, ctx.node, unit)
    return 0


def _restart(ctx: Context, units: list[str], only_if_running: bool = False) -> int:
    for unit in units:
        if not systemd.exists(ctx.state, ctx.node, unit):
            raise Fail(f"Failed to restart {unit}: Unit {unit} not found.", 5)
        if only_if_running and not systemd.is_active(ctx.state, ctx.node, unit):
            continue
        _warn_stale(ctx, unit)
        services.stop_unit(ctx.state, ctx.node, unit)
        # A restart picks up the loaded configuration, not what is on disk without daemon-reload.
        try:
            services.start_unit(ctx.state, ctx.node, unit)
        except services.UnitFailed as err:
            raise Fail(err.message, err.code) from err
    return 0


def _is_active(ctx: Context, units: list[str], quiet: bool) -> int:
    code = 3
    for unit in units:
        value = systemd.active_state(ctx.state, ctx.node, unit)
        if not quiet:
            print(value)
        if value == "active":
            code = 0
    return code


def _is_enabled(ctx: Context, units: list[str], quiet: bool) -> int:
    code = 1
    for unit in units:
        if not systemd.exists(ctx.state, ctx.node, unit):
            raise Fail(f"Failed to get unit file state for {unit}: No such file or directory", 1)
        value = systemd.is_enabled(ctx.state, ctx.node, unit)
        if not quiet:
            print(value)
        if value in ("enabled", "static", "alias", "indirect"):
            code = 0
    return code


def _show(ctx: Context, units: list[str], props: list[str], value_only: bool) -> int:
    for unit in units:
        known = systemd.exists(ctx.state, ctx.node, unit)
        active = systemd.active_state(ctx.state, ctx.node, unit)
        env = systemd.loaded_environment(ctx.state, ctx.node, unit)
        info = {
            "Id": unit,
            "LoadState": "loaded" if known else "not-found",
            "ActiveState": active,
            "SubState": {"active": "running", "failed": "failed"}.get(active, "dead"),
            "UnitFileState": systemd.is_enabled(ctx.state, ctx.node, unit) if known else "",
            "DropInPaths": " ".join("/" + str(p.relative_to(ctx.root)) for p in systemd.dropins(ctx.state, ctx.node,
                                                                                                 unit)),
            "Environment": " ".join(f"{k}={v}" for k, v in env.items()),
            "NeedDaemonReload": "yes" if systemd.needs_reload(ctx.state, ctx.node, unit) else "no",
        }  # fmt: skip
        for key in props or list(info):
            if key in info:
                print(info[key] if value_only else f"{key}={info[key]}")
    return 0


def _cat(ctx: Context, units: list[str]) -> int:
    for index, unit in enumerate(units):
        main = systemd.unit_file(ctx.state, ctx.node, unit)
        if main is None:
            raise Fail(f"No files found for {unit}.", 1)
        if index:
            print()
        print(f"# /{main.relative_to(ctx.root)}")
        print(main.read_text(), end="")
        for path in systemd.dropins(ctx.state, ctx.node, unit):
            print(f"\n# /{path.relative_to(ctx.root)}")
            print(path.read_text(), end="")
    return 0


def _status(ctx: Context, units: list[str]) -> int:
    code = 0
    for unit in units:
        if not systemd.exists(ctx.state, ctx.node, unit):
            raise Fail(f"Unit {unit} could not be found.", 4)
        active = systemd.active_state(ctx.state, ctx.node, unit)
        enabled = systemd.is_enabled(ctx.state, ctx.node, unit)
        main = systemd.unit_file(ctx.state, ctx.node, unit)
        print(f"\u25cf {unit}")
        print(f"     Loaded: loaded (/{main.relative_to(ctx.root) if main else ''}; {enabled}; preset: enabled)")
        drop = systemd.dropins(ctx.state, ctx.node, unit)
        if drop:
            print(f"    Drop-In: /{drop[0].parent.relative_to(ctx.root)}")
            print("             \u2514\u2500" + ", ".join(p.name for p in drop))
        sub = {"active": "running", "failed": "failed"}.get(active, "dead")
        print(f"     Active: {active} ({sub})")
        if active != "active":
            code = 3
    return code


def main(ctx: Context, argv: list[str]) -> int:
    reactor.tick(ctx.state)
    flags = {a for a in argv if a.startswith("-")}
    args = [a for a in argv if not a.startswith("-")]
    props: list[str] = []
    for index, arg in enumerate(argv):
        if arg in ("-p", "--property") and index + 1 < len(argv):
            props.extend(argv[index + 1].split(","))
            args.remove(argv[index + 1])
        elif arg.startswith("--property="):
            props.extend(arg.split("=", 1)[1].split(","))
    if not args:
        raise Fail("sim: systemctl without a verb is not simulated", 1)
    verb, names = args[0], args[1:]
    quiet = "--quiet" in flags or "-q" in flags
    now = "--now" in flags
    if verb == "daemon-reload":
        systemd.daemon_reload(ctx.state, ctx.node)
        return 0
    if not names and verb not in ("list-units",):
        raise Fail("Too few arguments.", 1)
    units = _units(ctx, names)
    handlers = {
        "enable": lambda: _enable(ctx, units, now),
        "disable": lambda: _disable(ctx, units, now),
        "start": lambda: _start(ctx, units),
        "stop": lambda: _stop(ctx, units),
        "restart": lambda: _restart(ctx, units),
        "try-restart": lambda: _restart(ctx, units, only_if_running=True),
        "reload-or-restart": lambda: _restart(ctx, units),
        "is-active": lambda: _is_active(ctx, units, quiet),
        "is-enabled": lambda: _is_enabled(ctx, units, quiet),
        "show": lambda: _show(ctx, units, props, "--value" in flags),
        "cat": lambda: _cat(ctx, units),
        "status": lambda: _status(ctx, units),
    }
    handler = handlers.get(verb)
    if handler is None:
        raise Fail(f"Unknown command verb '{verb}'.", 1)
    return handler()


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
