import sys

from demo_sink.cli import main

sys.exit(main())
