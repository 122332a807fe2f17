"""Upgrading the appliance to another LINSTOR release in lockstep with the satellites.

`upgrade --image NEW.raw.zst` writes the new image to a second disk resource of the controller VM (the
old one is not touched), carries the database and the appliance's settings over from the old disk while
the VM is stopped, boots the VM from the new disk and checks the new controller. If it does not answer
within the bound, refuses, or lost data, the VM boots from the old disk again. `--rollback` does the same
on request until `--commit` frees the old disk. Journaled and resumable with the deploy's machinery.
"""
