"""Run the ArcGIS Server double in the foreground: `python -m tests.arcgis_double --port 8090`."""

from __future__ import annotations

import argparse
import signal
import threading

from .server import ArcGISDouble
from .state import DoubleSettings
from .tokens import USERS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.arcgis_double", description="Local ArcGIS Server double (plain http)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument(
        "--token-minutes-max",
        type=int,
        default=DoubleSettings.long_timeout,
        help="longest token lifetime in minutes (longer requests are clamped)",
    )
    return parser.parse_args(argv)


def describe(double: ArcGISDouble) -> str:
    accounts = ", ".join(f"{user}/{password}" for user, password in USERS.items())
    return "\n".join(
        [
            f"ArcGIS double listening on {double.base_url}",
            f"  service:  {double.service_url}",
            f"  tokens:   {double.token_url}",
            f"  accounts (demo only): {accounts}  (user2 may sign in but is refused the service)",
            f"  control:  {double.base_url}/__double__/{{requests,clear,revoke-all,advance?seconds=N}}",
            "Press Ctrl-C to stop.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = DoubleSettings(long_timeout=args.token_minutes_max, control_api=True)
    double = ArcGISDouble(args.host, args.port, settings)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C works even if SIGINT was ignored
        signal.signal(signum, lambda *_: done.set())
    with double:
        print(describe(double), flush=True)
        while not done.wait(0.5):
            pass
    print("ArcGIS double stopped.", flush=True)


if __name__ == "__main__":
    main()
