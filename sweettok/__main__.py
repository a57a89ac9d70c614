"""``python -m sweettok``: the command line (``sweettok.cli``)."""

from sweettok.cli import main

raise SystemExit(main())
