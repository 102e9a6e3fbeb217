import sys

from katagate.demo_sink.cli import main

sys.exit(main())
