"""Bringing the appliance back from a backup, or the controller back onto a node.

`restore` is the deploy's machinery with another step list: the steps that make the disk, the VM, the
image, the units, the handover, the injection, the start, the check and the storage entries are the
deploy's own; the database they carry comes from the chosen backup instead of the host's controller.
`restore --to-host` runs the controller on this node again from the newest backup and leaves the VM
stopped and out of HA.
"""
