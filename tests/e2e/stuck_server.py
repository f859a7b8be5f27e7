"""``signet serve`` with a decision engine that never returns, for the shutdown-deadline tests.

    python -m tests.e2e.stuck_server {python|c} serve [signet serve flags]

The server is the real one (``webhook.server.workers.serve_app``: supervisor, workers, uvicorn,
the connection limits); only the engine is replaced. ``python`` spins in bytecode (signal
handlers still run between instructions, so the worker's own watchdog can fire); ``c`` sums a
huge range inside one C call, which holds the GIL and never lets a handler run (only the
supervisor's SIGKILL ends it; ``re`` would not do: its matcher checks for signals).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from tests.unit.server.conftest import empty_policies, static_trust
from webhook.app import create_app
from webhook.cli import build_parser
from webhook.config import from_args
from webhook.decision import ImageDecision
from webhook.decision.workload import Workload
from webhook.oci import CredentialStore
from webhook.server.workers import serve_app


class StuckEngine:
    def __init__(self, how: str) -> None:
        self.how = how

    async def decide(self, images: Sequence[str], namespace: str | None,
                     credentials: CredentialStore | None = None,
                     workload: Workload | None = None) -> list[ImageDecision]:
        print(f"stuck in {self.how}", file=sys.stderr, flush=True)
        if self.how == "c":
            sum(range(10**13))  # hours in one C call that never looks at signals
        while True:  # the engine never answers
            pass

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return {}

    def invalidate(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def main(argv: list[str]) -> int:
    how, *flags = argv
    parser, _commands = build_parser()
    config = from_args(parser.parse_args(flags), os.environ)
    app = create_app(config, engine=StuckEngine(how), trust=static_trust(), policies=empty_policies())
    return serve_app(config, app, None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
