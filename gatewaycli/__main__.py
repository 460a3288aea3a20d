from gatewaycli.cli import main

raise SystemExit(main())
