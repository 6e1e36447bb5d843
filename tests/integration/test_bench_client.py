"""The benchmark load client (bench/sse-load) for real: 50 streams through nginx to fastsse for about
2 s, in two worker processes; its JSON phase lines are what bench/compare and bench/hub read."""
import json
import os
import subprocess
from pathlib import Path

import pytest

N = 50


def sse_load() -> Path:
    path = os.environ.get("FASTSSE_SSE_LOAD")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"sse-load not found (FASTSSE_SSE_LOAD={path!r}): build with -DFASTSSE_BENCH=ON")
    return Path(path)


def test_50_streams_measured_through_nginx(shared):
    argv = [str(sse_load()), "--host", "127.0.0.1", "--port", str(shared.port), "--path", "/t/unix_us?bench=1",
            "--streams", str(N), "--ramp", "500", "--settle", "0.3", "--hold", "2", "--processes", "2",
            "--sources", "2", "--latency-from", "unix_us", "--close-one-per-second", "2"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    phases = [p["phase"] for p in lines]
    assert phases == ["ramped", "window_start", "window_end", "closed", "closed", "done"], run.stdout
    ramped, start, end, closed, done = lines[0], lines[1], lines[2], lines[3:5], lines[5]

    assert ramped["established"] == N and ramped["failed"] == 0, ramped
    assert start["established"] == N
    assert end["established"] == N and end["failed"] == 0 and end["failures"] == {}, end
    assert end["streams_lost_in_window"] == 0
    assert ramped["t"] <= start["t"] < end["t"] <= closed[0]["t"] < closed[1]["t"] <= done["t"]
    assert abs(end["t"] - start["t"] - 2) < 0.01

    # /t/unix_us ticks every 100 ms: about 10 events a stream a second, counted in the window only.
    assert 0.8 * N * 10 * 2 <= end["events"] <= 1.1 * N * 10 * 2, end
    assert end["bytes"] > end["events"] * 20
    lat = end["latency_us"]
    assert lat["count"] == end["events"] and lat["unparsed"] == 0, lat
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] < 2_000_000, lat
    assert end["client_cpu_s"] >= 0

    # The closed streams: two different ones, from the two source addresses' ports; fastsse noticed.
    assert closed[0]["stream"] != closed[1]["stream"]
    assert all(0 < c["local_port"] < 65536 for c in closed)
    assert done["events_total"] >= end["events"]
    shared.fastsse.wait_for_log(r"stream \d+ opened: producer=clock uri=/t/unix_us\?bench=1", count=N)
    assert "sse-load: window 2 s: 50 established" in run.stderr


def test_by_stamp_gives_each_ticks_last_delivery(shared):
    """--by-stamp (bench/hub): per timestamp, the deliveries in the window, summed over the worker
    processes, and the latency of the last one. The clock's tick is one stamp for every stream."""
    argv = [str(sse_load()), "--host", "127.0.0.1", "--port", str(shared.port), "--path", "/t/unix_us?stamps=1",
            "--streams", "20", "--ramp", "500", "--settle", "0.3", "--hold", "1", "--processes", "2",
            "--latency-from", "unix_us", "--by-stamp", "--quiet"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    end = next(p for p in map(json.loads, run.stdout.splitlines()) if p["phase"] == "window_end")
    stamps = end["by_stamp"]
    # 100 ms ticks for 1 s: about 10, in order; each tick's deliveries from both processes together.
    assert 8 <= len(stamps) <= 12, stamps
    assert [s["t_us"] for s in stamps] == sorted({s["t_us"] for s in stamps})
    assert sum(s["deliveries"] for s in stamps) == end["events"]
    assert all(0 < s["deliveries"] <= 20 for s in stamps) and max(s["deliveries"] for s in stamps) == 20, stamps
    assert all(0 <= s["last_us"] <= end["latency_us"]["max"] for s in stamps)
    assert max(s["last_us"] for s in stamps) == end["latency_us"]["max"]


def test_no_by_stamp_without_the_flag(shared):
    argv = [str(sse_load()), "--host", "127.0.0.1", "--port", str(shared.port), "--path", "/t/unix_us",
            "--streams", "2", "--settle", "0", "--hold", "0.3", "--latency-from", "unix_us", "--quiet"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    end = next(p for p in map(json.loads, run.stdout.splitlines()) if p["phase"] == "window_end")
    assert "by_stamp" not in end


def test_bad_flags_exit_2():
    run = subprocess.run([str(sse_load()), "--streams", "0"], capture_output=True, text=True, timeout=10)
    assert run.returncode == 2 and "--streams" in run.stderr
    run = subprocess.run([str(sse_load()), "--latency-from", "tai"], capture_output=True, text=True, timeout=10)
    assert run.returncode == 2
