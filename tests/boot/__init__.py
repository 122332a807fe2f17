"""Boot tests: the built appliance image in QEMU, checked over its serial console, SSH and the guest agent."""
