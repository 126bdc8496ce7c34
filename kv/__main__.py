"""`python -m kv`: run one KV peer (see kv.server)."""

import sys

from kv.server import main

sys.exit(main())
