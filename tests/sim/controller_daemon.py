#!/usr/bin/env python3
"""Runs one stand-in LINSTOR controller until SIGTERM: the simulated `linstor-controller.service`.

Started detached by the fake systemctl (so it outlives that process), it writes its loopback port
to --ready-file and exits by itself when the simulation's state directory disappears.
Stand-alone on purpose: it only imports the stand-in controller package.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--config-directory", type=Path, help="the node's /etc/linstor (failure injection file)")
    parser.add_argument("--version", required=True)
    parser.add_argument("--cluster-state", type=Path)
    parser.add_argument("--ready-file", required=True, type=Path)
    parser.add_argument("--controller-id", required=True)
    parser.add_argument("--address", required=True, help="the address this controller stands for")
    parser.add_argument("--watch", required=True, type=Path, help="exit when this directory is gone")
    args = parser.parse_args()

    sys.path.insert(0, str(FIXTURES))
    from linstor_standin import StandinController  # noqa: PLC0415 - found only through FIXTURES
    from linstor_standin.errors import StandinError  # noqa: PLC0415 - found only through FIXTURES

    controller = StandinController(
        args.db, args.version, listen="127.0.0.1", port=0, cluster_state=args.cluster_state,
        controller_id=args.controller_id, addresses=[args.address], config_directory=args.config_directory,
    )  # fmt: skip
    try:
        # Migrates an older database first; refuses a newer one (Database initialization error).
        controller.start()
    except StandinError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    info = {"port": controller.port, "pid": os.getpid(),
            "controller_id": controller.controller_id}  # fmt: skip
    tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, args.ready_file)
    while not done.wait(0.5):
        if not args.watch.is_dir():
            break
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
