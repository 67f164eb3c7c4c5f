"""``python -m clampdpo`` is the ``clampdpo`` command."""

import sys

from clampdpo.main import main

sys.exit(main())
