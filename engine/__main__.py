"""``python -m worldflow``: the same as the ``worldflow`` command."""

from worldflow._cli import main

raise SystemExit(main())
