#!/usr/bin/env python3
"""Holds N event streams open through nginx and prints what fastsse spends on them.

Prints: streams established and receiving events, fastsse's RSS and PSS with them (from /proc), its
CPU time per 1,000 events delivered while they are held (from /proc/PID/task/*/schedstat, exact to
the nanosecond), and the time from a client closing its connection to fastsse logging that stream
closed (freed); with --sigterm, how long fastsse takes to end every stream and exit.
Usage: bench/hold_streams.py --port 8080 --path /events/clock --streams 10000 \
           --fastsse-pid PID --fastsse-log FILE
"""
import argparse
import datetime
import os
import re
import selectors
import signal
import socket
import statistics
import sys
import time


def memory_kb(pid):
    fields = {}
    for name in ("status", "smaps_rollup"):
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "Pss"):
                    fields[key] = int(rest.split()[0])
    return fields.get("VmRSS", 0), fields.get("Pss", 0)


def cpu_ns(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def hold(sel, seconds):
    """Reads every stream for `seconds`; returns the number of events received."""
    events = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                continue
            events += data.count(b"\nid: ")
    return events


def open_streams(args):
    sel = selectors.DefaultSelector()
    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").encode()
    conns, got_event, failed = [], set(), 0
    sources = [f"127.0.0.{i}" for i in range(1, 1 + max(1, args.source_addresses))]
    start = time.monotonic()
    for i in range(args.streams):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((sources[i % len(sources)], 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", args.port))
        except OSError:
            failed += 1
            s.close()
            continue
        conns.append(s)
        sel.register(s, selectors.EVENT_WRITE, [b"", False])
        if len(conns) % args.ramp_batch == 0:
            pump(sel, request, got_event, 0.05)
    deadline = time.monotonic() + args.timeout
    while len(got_event) < len(conns) and time.monotonic() < deadline:
        pump(sel, request, got_event, 0.2)
    return sel, conns, got_event, failed, time.monotonic() - start


def pump(sel, request, got_event, timeout):
    for key, mask in sel.select(timeout):
        s, state = key.fileobj, key.data
        if mask & selectors.EVENT_WRITE:
            try:
                s.send(request)
            except OSError:
                sel.unregister(s)
                continue
            sel.modify(s, selectors.EVENT_READ, state)
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            continue
        state[0] = (state[0] + data)[-256:]
        if b"\nid: " in state[0] or state[0].startswith(b"id: "):
            got_event.add(s)


def exited(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def shutdown(sel, pid):
    """SIGTERM with every stream open: seconds until exit, and how many streams got retry: and their end."""
    start = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    ended, tails = 0, {}
    while time.monotonic() - start < 10:
        if exited(pid) and not sel.get_map():
            break
        for key, _ in sel.select(0.05):
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            tail = tails.get(key.fileobj, b"") + data
            tails[key.fileobj] = tail[-64:]
            if not data or tail.endswith(b"0\r\n\r\n"):
                ended += b"retry: " in tail
                sel.unregister(key.fileobj)
        if exited(pid) and "took" not in locals():
            took = time.monotonic() - start
    return locals().get("took", float("inf")), ended


def parse_log_time(line):
    stamp = line.split(" ", 1)[0]
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def disconnect_latencies(sel, conns, log_path, samples):
    closed_re = re.compile(r"stream \d+ closed: client gone")
    with open(log_path) as log:
        log.seek(0, os.SEEK_END)
        latencies = []
        for s in conns[:samples]:
            if s in sel.get_map():
                sel.unregister(s)
            t0 = time.time()
            s.close()
            line = ""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                line = log.readline()
                if not line:
                    time.sleep(0.001)
                    continue
                if closed_re.search(line):
                    break
            else:
                latencies.append(float("inf"))
                continue
            # The log's clock has millisecond steps: a latency below 1 ms shows as 0 or 1 ms.
            latencies.append(max(0.0, parse_log_time(line) - t0))
    return latencies


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--path", default="/events/clock")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--ramp-batch", type=int, default=500)
    ap.add_argument("--source-addresses", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--fastsse-pid", type=int, required=True)
    ap.add_argument("--fastsse-log", required=True)
    ap.add_argument("--disconnect-samples", type=int, default=100)
    ap.add_argument("--hold", type=float, default=10, help="seconds to hold the streams while measuring CPU")
    ap.add_argument("--sigterm", action="store_true", help="end by sending fastsse SIGTERM with the streams open")
    args = ap.parse_args()

    rss0, pss0 = memory_kb(args.fastsse_pid)
    sel, conns, got_event, failed, took = open_streams(args)
    rss, pss = memory_kb(args.fastsse_pid)
    held = len(got_event)
    print(f"streams requested      {args.streams}")
    print(f"streams receiving      {held}  (connect failures {failed}, {took:.1f} s to establish)")
    print(f"fastsse RSS            {rss0} kB idle -> {rss} kB with the streams")
    print(f"fastsse PSS            {pss0} kB idle -> {pss} kB")
    if held:
        print(f"RSS per stream         {(rss - rss0) * 1024 / held:.0f} bytes")
    cpu0 = cpu_ns(args.fastsse_pid)
    events = hold(sel, args.hold)
    cpu = cpu_ns(args.fastsse_pid) - cpu0
    if events:
        print(f"events received        {events} in {args.hold:.0f} s")
        print(f"fastsse CPU            {cpu / 1e6:.0f} ms, {cpu / 1e6 / events * 1000:.2f} ms per 1,000 events")
    alive = [s for s in conns if s in got_event]
    samples = min(args.disconnect_samples, len(alive))
    lat = disconnect_latencies(sel, alive, args.fastsse_log, samples)
    if lat:
        ms = sorted(x * 1000 for x in lat)
        print(f"disconnect -> freed    median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms "
              f"over {len(ms)} clients (log clock: 1 ms steps)")
    if args.sigterm:
        open_now = len(sel.get_map())
        took, ended = shutdown(sel, args.fastsse_pid)
        print(f"SIGTERM -> exit         {took:.2f} s with {open_now} streams open; "
              f"{ended} got retry: and the end of the response")
    for s in conns:
        s.close()
    sel.close()
    return 0 if held == args.streams else 1


if __name__ == "__main__":
    sys.exit(main())
