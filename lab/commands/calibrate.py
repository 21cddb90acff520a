"""python -m lab calibrate: the calibration phase of a run alone (lab/run/calibration.py), printed as JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import say
from core.host import LOOPBACK, check_port_free
from lab import config as options
from servers.matrix import Matrix


def calibrate_main(args: argparse.Namespace, matrix: Matrix) -> int:
    """python -m lab calibrate: the calibration phase of a run alone (the run options' values), on this machine,
    printed as JSON."""
    from core.host import atomic_write
    from lab.measure.instrument import Instrument
    from lab.run.backends import open_backends
    from lab.run.calibration import calibrate

    assert matrix.calibration is not None
    cell, scenario = matrix.calibration
    config = options.from_args(args, matrix)
    config = config.model_copy(update={"cells": [cell], "scenarios": args.scenarios or [scenario]}).check(matrix)
    check_port_free(LOOPBACK, config.port, "server port")
    local = config.model_copy(update={"target_agent": None, "locust_master": None})  # on this machine
    targets, loads = open_backends(local, matrix, Path(args.workdir))
    instrument = Instrument(config, matrix, "calibration", loads, tuple(config.server_cpus), targets)
    try:
        record = calibrate(config, matrix, targets, loads, instrument, say)
    finally:
        instrument.close()
        loads.close()
        targets.release()
    text = (record.model_dump_json(indent=1) if record else "null") + "\n"
    if args.out:
        atomic_write(args.out, text)
    else:
        sys.stdout.write(text)
    return 0
