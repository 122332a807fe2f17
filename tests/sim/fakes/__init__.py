"""The fake PVE, LINSTOR-host and OpenSSH commands; each module has main(argv) -> exit code."""
