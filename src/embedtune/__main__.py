"""``python -m embedtune``: the command line, also as launchers start it (``torchrun ... -m embedtune train``).

Under a launcher, processes other than rank 0 print nothing on stdout, so the end-of-run summary appears once;
their warnings and errors still reach stderr, marked with their rank.
"""

import os
import sys

from embedtune.cli import main
from embedtune.cli.console import launcher_rank

if __name__ == "__main__":
    if launcher_rank() > 0:
        sys.stdout = open(os.devnull, "w")  # for the life of the process
    sys.exit(main())
