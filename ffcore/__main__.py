"""`python -m ffcore`: see ffcore/cli.py."""

import sys

from ffcore.cli import main

sys.exit(main())
