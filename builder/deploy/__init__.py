"""linstor-appliance deploy: put the appliance on a Proxmox VE cluster as a highly available controller VM.

The pieces, in the order a deploy uses them: `options` (what the admin asked for), `preflight` (what the
cluster looks like, and every reason not to go on), `plan` (what will be done where), `steps` (one unit
per change, each able to tell whether it is done and, where it makes sense, undo itself), `journal`
(what has been changed so far, so a deploy can resume or roll back), `runner` (the order of it all) and
`rollback`. `pve`, `storagecfg`, `remote` and `controller` are the adapters to Proxmox VE, SSH and LINSTOR;
`firewall` renders and checks the VM's nftables allowlist.
"""
