#!/usr/bin/env python3
"""Issue 12's measure of a process failover on the Redis engine: two fastsse processes on one
redis-server behind one nginx (nginx/fastsse-upstream.conf), a few EventSource-like clients on each
(they reconnect with Last-Event-ID when their response ends), N updates published through nginx at a
steady rate while process 1 is killed (SIGKILL) and started again, then process 2. Prints, per
client, what it received, what is missing (answered 200 to the publisher, never received) and what
is repeated: both must be 0.

tests/integration/test_redis_engine.py runs the same with 1,500 updates (CI); this is the 10,000 run.
Usage: bench/redis_failover.py [--updates 10000] [--rate 500] [--clients-per-process 3]
           [--binary build/fastsse]
Needs what the integration tests need: Debian's nginx, redis-server and python3.
"""
import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

SOURCE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SOURCE / "tests" / "integration"))

from fastsse_testlib import RedisServer  # noqa: E402
from test_redis_engine import Cluster, failover_run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=500, help="updates a second")
    ap.add_argument("--clients-per-process", type=int, default=3)
    ap.add_argument("--binary", type=Path, default=SOURCE / "build" / "fastsse")
    args = ap.parse_args()
    paths = SimpleNamespace(binary=args.binary.resolve(), source=SOURCE)
    # Short: unix socket paths have at most 107 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="fsse-failover-", dir="/tmp"))
    workdir.chmod(0o755)
    redis = RedisServer(workdir).start()
    cluster = None
    try:
        cluster = Cluster(paths, workdir, redis)
        r = failover_run(cluster, args.updates, args.rate, args.clients_per_process,
                         log=lambda line: print(line, file=sys.stderr))
    finally:
        if cluster is not None:
            cluster.stop()
        redis.stop()
    print(f"published {r['published']} in {r['seconds']:.1f} s: {r['stored']} answered 200, "
          f"{len(r['failed'])} not ({r['failed'][:5]})")
    print(f"clients per process at the start: {[sorted(h) for h in r['held']]}")
    bad = 0
    for k, c in enumerate(r["clients"]):
        print(f"client {k}: received {c['received']}, missing {c['missing']}, repeated {c['repeated']}, "
              f"not answered 200 {c['not_stored']}, in order {c['in_order']}, connections {c['connections']}")
        bad += c["missing"] + c["repeated"] + (not c["in_order"])
    print(f"logs: {workdir}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
