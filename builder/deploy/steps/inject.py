"""Step 7: the database, its configuration, the network, a firewall and the deploy manifest into the VM disk.

All of it is written while the VM is offline, from the backup taken in step 6 (so what the VM gets is
what the backup's checksums describe). `/etc/linstor-appliance/deploy.json` records what was injected;
the appliance's linstor-appliance-deploy-check.service compares it before linstor-controller starts
and keeps the controller stopped on a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from builder import __version__
from builder.deploy import backup, inject
from builder.deploy import firewall as firewalls
from builder.deploy.context import Context, Facts
from builder.deploy.options import Options
from builder.deploy.steps.base import Action, Step
from builder.deploy.steps.image import refuse_if_in_use
from builder.errors import die
from builder.resources import render

DEPLOY_MANIFEST = "/etc/linstor-appliance/deploy.json"
IMAGE_MANIFEST = "/etc/linstor-appliance/manifest.json"
FIREWALL = "/etc/nftables.conf"
H2_SUFFIXES = (".mv.db", ".trace.db", ".h2.db")


def appliance_toml(host_toml: str) -> str:
    """The host's linstor.toml for the VM: same database and secrets, but listening on the VM's addresses."""
    out = []
    section = ""
    for line in host_toml.splitlines(keepends=True):
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            section = header.group(1).strip()
        if section in ("http", "https") and re.match(r"^\s*listen_addr\s*=", line):
            out.append(f"# {line.strip()}  (the host's address; the VM listens on all of its own)\n")
            continue
        out.append(line)
    return "".join(out)


def allowed(ctx: Context) -> firewalls.Allowlist:
    return firewalls.allowlist(ctx.f.node_ips, ctx.options.allow_from)


def firewall_for(facts: Facts, options: Options) -> str:
    """/etc/nftables.conf for the VM: the served ports from the nodes and --allow-from only."""
    allowed = firewalls.allowlist(facts.node_ips, options.allow_from)
    return firewalls.ruleset(facts.firewall_ports, allowed, vmid=options.vmid)


def firewall(ctx: Context) -> str:
    return firewall_for(ctx.f, ctx.options)


def netplan(ctx: Context) -> str:
    o = ctx.options
    return render("netplan/config.yaml.j2", network="static", address=str(o.address),
                  gateway=str(o.gateway) if o.gateway else None, dns=list(o.dns), search_domains=[])  # fmt: skip


def database_files(ctx: Context, folder: Path) -> list[inject.File]:
    base = ctx.f.db_base.lstrip("/")
    files = []
    for suffix in H2_SUFFIXES:
        source = folder / f"{base}{suffix}"
        if source.is_file():
            files.append(inject.File(f"/{base}{suffix}", source.read_bytes(), 0o640))
    if not files:
        die(f"the backup {folder} holds no database /{base}.mv.db", hint="check the controller's linstor.toml")
    return files


def build(ctx: Context, folder: Path) -> list[inject.File]:
    o, f = ctx.options, ctx.f
    files = database_files(ctx, folder)
    files.append(inject.File("/etc/linstor/linstor.toml", appliance_toml(f.host_toml).encode(), 0o640))
    digests = {item.path: hashlib.sha256(item.data).hexdigest() for item in files}
    files += [
        inject.File("/etc/netplan/config.yaml", netplan(ctx).encode(), 0o600),
        inject.File(FIREWALL, firewall(ctx).encode(), 0o755),
        inject.File("/etc/hostname", f"{o.name}\n".encode()),
        inject.File("/etc/hosts", render("image/templates/hosts.j2", hostname=o.name).encode()),
        inject.File(IMAGE_MANIFEST, (json.dumps(f.manifest, indent=2, sort_keys=True) + "\n").encode()),
    ]
    deployed = {
        "format": 1,
        "deployed_by": f"linstor-appliance {__version__}",
        "deployed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "vmid": o.vmid,
        "name": o.name,
        "address": str(o.address),
        "linstor_version": f.linstor_version,
        "image": {"name": o.image.name if o.image else None, "built_at": f.manifest.get("built_at"),
                  "linstor_controller": f.manifest.get("linstor_controller", {}).get("version")},
        "files": digests,
    }  # fmt: skip
    files.append(inject.File(DEPLOY_MANIFEST, (json.dumps(deployed, indent=2, sort_keys=True) + "\n").encode()))
    return files


class Inject(Step):
    key = "inject"
    title = "Put the database and the VM's settings into its disk"

    def describe(self, ctx: Context) -> list[Action]:
        o, f = ctx.options, ctx.f
        here = f.local.name
        sources = ", ".join(allowed(ctx).elements)
        return [
            Action(here, f"mount the root partition of {o.device} (by offset, while VM {o.vmid} is off)"),
            Action(here, f"write {f.db_base}.mv.db and /etc/linstor/linstor.toml from the step 6 backup"),
            Action(here, f"write /etc/netplan/config.yaml: {o.address}" + (f" via {o.gateway}" if o.gateway else "")
                         + (f", DNS {', '.join(o.dns)}" if o.dns else "")),
            Action(here, f"write /etc/nftables.conf: ports {', '.join(map(str, f.firewall_ports))} only from "
                         f"{sources}"),
            Action(here, f"write /etc/hostname ({o.name}), {IMAGE_MANIFEST} and {DEPLOY_MANIFEST}"),
            Action(here, "read the files back and compare"),
        ]  # fmt: skip

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"in the VM disk: {', '.join(sorted(record.get('files', {})))}"]

    def apply(self, ctx: Context) -> dict[str, Any]:
        o = ctx.options
        folder = Path(str(ctx.j.record("handover").get("backup", "")))
        if not backup.complete(folder):
            die("the database backup of step 6 is missing or incomplete", hint="run the deploy again with --resume")
        backup.verify(folder)
        refuse_if_in_use(ctx)
        files = build(ctx, folder)
        # A ruleset nft refuses would leave the VM without a firewall and its controller stopped.
        firewalls.check(next(item.data.decode() for item in files if item.path == FIREWALL))
        device = o.host_path(o.device)
        written = inject.write_checked(device, files, "the VM disk",
                                       hint="the disk may be in use elsewhere; run the deploy again with --resume")
        return {"files": written, "from_backup": str(folder)}
