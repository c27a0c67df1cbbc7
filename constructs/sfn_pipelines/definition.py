"""Reading a synthesized ``DefinitionString`` back: the ASL text inside ``Fn::Join``.

CDK inlines the definition as a ``Fn::Join`` of text and tokens (ARNs, partition).
Used for size checks at synth, the CLI summary and the tests that execute definitions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

# A token stands for an ARN or a partition; count it as a long ARN for size checks.
TOKEN_SIZE_ESTIMATE = 100


def definition_text(value: Any, resolve: Callable[[Any], str] | None = None) -> str:
    """Flatten a DefinitionString; ``resolve`` maps each token (a Ref/GetAtt dict) to text."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(p if isinstance(p, str) else
                        (resolve(p) if resolve else "T" * TOKEN_SIZE_ESTIMATE) for p in parts)
    return json.dumps(value)


def definition_size(value: Any) -> int:
    return len(definition_text(value).encode())
