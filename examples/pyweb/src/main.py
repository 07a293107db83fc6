"""pyweb: a tiny web app and worker using only the standard library."""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"greeting": os.environ.get("PYWEB_GREETING", "hello")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(prog="pyweb")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--port", type=int, default=8080)
    work = sub.add_parser("work")
    work.add_argument("--interval", type=float, default=5.0)
    sub.add_parser("migrate")
    args = parser.parse_args()
    if args.command == "serve":
        ThreadingHTTPServer(("0.0.0.0", args.port), Hello).serve_forever()
    elif args.command == "work":
        while True:
            print("worker: tick", flush=True)
            time.sleep(args.interval)
    else:
        print("migrate: nothing to migrate")


if __name__ == "__main__":
    main()
