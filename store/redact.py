"""Server paths out of the error text users see (jobs.error, trials.error).

Tracebacks and OS errors name files by their absolute paths: where the code, the virtualenv and the
data directory live on the server. The store redacts them as it writes an error: the code, virtualenv
and Python directories become `<app>`, `<venv>` and `<python>`, and any other absolute path keeps only
its last part (`.../ds_1a2b.npz`). The logs on the server keep the full paths.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

CODE_DIR = Path(__file__).resolve().parent.parent

# A directory part of a path: no whitespace, quotes, brackets or separators that end a path in prose.
_PART = r"[^\s/'\"()<>\[\],;:]+"
# The directories of an absolute path, where a path can begin: at the start, after a space, a quote,
# a bracket, `=` or `,` (so `1/2`, `loss/acc` and the `//host/` of a URL are left alone).
_ABSOLUTE_DIRS = re.compile(rf"(?<![^\s'\"(\[=,])/(?:{_PART}/)+")


@lru_cache(maxsize=1)
def _known_roots() -> tuple[tuple[str, str], ...]:
    """(path, placeholder) pairs, longest path first, so a virtualenv inside the code dir wins."""
    roots: dict[str, str] = {}
    for path, name in [(sys.prefix, "<venv>"), (sys.base_prefix, "<python>"), (str(CODE_DIR), "<app>")]:
        for form in (str(Path(path)), str(Path(path).resolve())):
            if form != "/":
                roots.setdefault(form, name)
    return tuple(sorted(roots.items(), key=lambda item: -len(item[0])))


def redact_paths(text: str) -> str:
    """`text` with the server's absolute paths replaced by placeholders or cut to their last part."""
    for root, name in _known_roots():
        text = text.replace(root + "/", name + "/")
    return _ABSOLUTE_DIRS.sub(".../", text)
