"""``python -m consumer``: the ``whisp`` command."""

import sys

from consumer.cli import main

sys.exit(main())
