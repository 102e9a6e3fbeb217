from katagate.cli import main

raise SystemExit(main())
