from cryptoetl.cli import main

raise SystemExit(main())
