"""The edgetpu_compiler flags `plan split --compiler-args` passes on, in a module that imports nothing
(the `plan` command shows them in its help, which must not load the library).

Each long flag maps to its short form and whether it takes a value.
"""

from __future__ import annotations

from typing import Final

COMPILER_FLAGS: Final[dict[str, tuple[str, bool]]] = {
    "--min_runtime_version": ("-m", True),  # the oldest Edge TPU runtime the segments must run on
    "--search_delegate": ("-d", False),  # after a failure, search for an earlier point to stop mapping ops
    "--delegate_search_step": ("-k", True),  # that search's step, in ops
    "--timeout_sec": ("-t", True),  # the compiler's own time limit per segment
}
