"""``python -m seedwatch``."""

from __future__ import annotations

import sys

from seedwatch._cli import main

if __name__ == "__main__":
    sys.exit(main())
