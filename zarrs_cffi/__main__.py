"""``python -m zarrs_cffi``: the ``zarrs-cffi`` command line tool (``cli/``)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
