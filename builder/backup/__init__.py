"""Backups of the appliance's LINSTOR database taken from outside the VM, and where they are kept.

The database is exported by the controller in the VM (its REST export or online-backup API, else a copy
of the H2 file, as the in-VM db-backup does) and fetched through the QEMU guest agent, which needs neither
a password nor a key. Each backup is stored with its SHA-256 on every node or on a storage the admin names.
"""
