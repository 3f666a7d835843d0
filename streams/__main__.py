"""``python -m streams`` runs the ``streams`` command."""

from .cli import main

raise SystemExit(main())
