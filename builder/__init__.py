"""linstor-appliance: build and deploy a LINSTOR controller appliance VM for Proxmox VE."""

__version__ = "0.1.0"
