"""Tests of linstor-appliance deploy against the simulated Proxmox VE + LINSTOR cluster."""
