"""`python -m kata_emulator ...`"""

import sys

from katagate.kata_emulator.cli import main

sys.exit(main())
