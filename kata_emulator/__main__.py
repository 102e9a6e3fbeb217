"""`python -m kata_emulator ...`"""

import sys

from kata_emulator.cli import main

sys.exit(main())
