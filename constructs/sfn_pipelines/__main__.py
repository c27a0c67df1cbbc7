"""``python -m sfn_pipelines`` is the ``sfn-pipelines`` command."""

import sys

from sfn_pipelines.cli import main

sys.exit(main())
