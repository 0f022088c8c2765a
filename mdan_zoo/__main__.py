"""``python -m mdan_zoo`` runs the ``mdan-zoo`` command line."""

from .cli import main

raise SystemExit(main())
