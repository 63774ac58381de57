"""A silent pysteps import: its "Pysteps configuration file found at ..." print.

pysteps prints where its configuration file is at import unless that file says
``"silent_import": true``. :func:`quiet_pysteps_import`, called when :mod:`pipeline` is
imported (so before any pysteps import of this project), points ``PYSTEPSRC`` at
``pipeline/console/pystepsrc`` (silent, otherwise pysteps' defaults) unless the user
chose a configuration: ``PYSTEPSRC`` already set, ``./pystepsrc`` or ``~/.pysteps/pystepsrc``
(pysteps' own search order; theirs is then read, with its own ``silent_import``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PYSTEPSRC = Path(__file__).resolve().with_name("pystepsrc")
"""The project's silent pysteps configuration file."""


def quiet_pysteps_import() -> bool:
    """Point ``PYSTEPSRC`` at :data:`PYSTEPSRC` unless the user has a configuration.

    Returns
    -------
    bool
        True when ``PYSTEPSRC`` was set (False: pysteps already imported, or a
        configuration of the user's own exists).
    """
    if "pysteps" in sys.modules or os.environ.get("PYSTEPSRC"):
        return False
    if Path("pystepsrc").is_file():
        return False
    home = os.environ.get("HOME")
    if home and (Path(home) / ".pysteps" / "pystepsrc").is_file():
        return False
    os.environ["PYSTEPSRC"] = str(PYSTEPSRC)
    return True
