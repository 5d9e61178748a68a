"""`python -m heteroserve` runs the CLI (the same as the `heteroserve` script)."""

import sys

from heteroserve.cli import main

sys.exit(main())
