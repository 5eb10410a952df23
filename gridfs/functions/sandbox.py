"""``python -m gridfs.functions.sandbox CONFIG MEMORY_MB``: one call of a user function, in a process of its own.

The runner starts one per call and writes the job on stdin: ``{"spec": {...}, "event": {...}}``
(the spec already checked against its signature). The memory limit (RLIMIT_AS) is set
here, first thing, rather than in a ``preexec_fn``: the runner has threads, and forking
a threaded process to run Python before ``exec`` can deadlock. Whatever the function
prints goes to stderr, the call's log; the outcome is one JSON line on the original
stdout: ``{"ok": true}`` or ``{"ok": false, "error": "Type: message"}``. The function is called as
``FUNC(event, client)``: the event with a ``function`` key added (its own name, account, bucket,
prefix and events), and a GridClient of its account.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import resource
import sys


def limit_memory(mb: int) -> None:
    size = mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, size))


def load(spec: dict) -> object:
    """The function ``spec["run"]`` names, from the module's kept source or, as the agent's own handlers
    of grid.toml are, from the installed module."""
    if not spec.get("source"):
        from gridfs.events.handlers import load_user_handler

        return load_user_handler(spec["run"])
    import types

    module_name, _, fn_name = spec["run"].partition(":")
    module = types.ModuleType(module_name)
    module.__file__ = f"<function {spec['name']}>"
    sys.modules[module_name] = module
    exec(compile(spec["source"], module.__file__, "exec"), module.__dict__)  # the operator's code, signed
    return getattr(module, fn_name)


def main() -> int:
    config, memory_mb = sys.argv[1], int(sys.argv[2])
    limit_memory(memory_mb)
    import json
    import os
    import traceback

    result = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the function's prints join its stderr, never the result line
    sys.stdout = sys.stderr
    outcome: dict = {"ok": True}
    try:
        job = json.loads(sys.stdin.read())
        spec = job["spec"]
        fn = load(spec)
        from gridfs.client import GridClient

        with GridClient(config, account=spec["account"]) as client:
            # The function learns its own registration: examples scope their work to its bucket and prefix.
            scope = {k: spec[k] for k in ("name", "account", "bucket", "prefix", "on")}
            fn({**job["event"], "function": scope}, client)
    except MemoryError:
        traceback.print_exc()
        outcome = {"ok": False, "error": f"MemoryError: over the memory limit of {memory_mb} MiB"}
    except BaseException as exc:  # anything the user's code raises is the call's outcome
        traceback.print_exc()
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    result.write(json.dumps(outcome) + "\n")
    result.flush()
    sys.stderr.flush()
    # No interpreter teardown: threads a function left running must not hold the call open.
    os._exit(0 if outcome["ok"] else 1)


if __name__ == "__main__":
    sys.exit(main())
