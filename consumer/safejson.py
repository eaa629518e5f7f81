"""JSON from outside (message bodies, markers, status records and locks in a bucket that
clients write to): ``json.loads`` raises ``RecursionError``, not ``ValueError``, on input
nested a thousand levels deep, which 2 KB of ``[`` hold. Every reader of JSON it did not
write itself goes through ``loads``, which raises ``ValueError`` for all it cannot read.
Found by the fuzzing of issue 11: a message body ``[[[[...`` stopped the pull loop.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads``; ``ValueError`` for anything it cannot read, too deep included."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
