"""Cold start of a whole cluster: guests on DRBD storage wait for a LINSTOR controller, the controller VM never waits.

`install.install(root, settings)`, `install.remove(root)` and `status.report(root)` are what the
admin runs; `node.main()` (gate, hook, retry, probe) is what the nodes run, built on `runtime`.
See docs/coldstart.md. Nothing is imported here: the hook's start-up must stay light.
"""
