"""Drives one Python peer for `npm run bench:peers` with the workload of every bench target:
echo of a 100-byte string, sequential calls for p50/p99, then calls with 64 in flight for
throughput. bench/peers.ts starts it with `python3 driver.py celery|dask` and sends commands on
stdin, one per line, answering each with one JSON line on stdout:

  warm N               -> {"ok": true}
  round SEQ CONC       -> {"p50": ms, "p99": ms, "throughput": calls/s}
  quit                 -> closes the peer's client (and the Dask cluster) and exits

It prints {"ready": ...} once the peer answered a first call. Every wait is bounded."""
import json
import os
import sys
import time
from collections import deque

PAYLOAD = os.environ['SKEIN_BENCH_PAYLOAD']
CALL_TIMEOUT_S = 30
CONCURRENCY = 64


def quantile(sorted_xs, q):
    return sorted_xs[min(len(sorted_xs) - 1, int(q * len(sorted_xs)))]


def sequential(call, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return quantile(times, 0.5), quantile(times, 0.99)


class CeleryPeer:
    """Celery 5 + Redis: a solo-pool worker (bench/peers.ts starts it), results over Redis."""

    def __init__(self):
        from celery_app import app, echo
        self.app = app
        self.echo = echo

    def call(self):
        r = self.echo.delay(PAYLOAD).get(timeout=CALL_TIMEOUT_S)
        assert r == PAYLOAD

    def concurrent(self, n):
        # 64 in flight: the solo worker runs tasks in order, so waiting on the oldest keeps
        # the window full.
        t = time.perf_counter()
        pending = deque()
        issued = done = 0
        while done < n:
            while issued < n and len(pending) < CONCURRENCY:
                pending.append(self.echo.delay(PAYLOAD))
                issued += 1
            assert pending.popleft().get(timeout=CALL_TIMEOUT_S) == PAYLOAD
            done += 1
        return n / (time.perf_counter() - t)

    def close(self):
        self.app.close()


def echo(value):
    return value


class DaskPeer:
    """Dask distributed: a LocalCluster of 2 worker processes (one thread each) with mutual TLS
    (distributed's Security.temporary(): one throwaway CA and certificate, required on every
    connection between client, scheduler and workers)."""

    def __init__(self):
        from distributed import Client, LocalCluster
        from distributed.security import Security
        sec = Security.temporary()
        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol='tls',
                                    host='127.0.0.1', security=sec, dashboard_address=None)
        self.client = Client(self.cluster, security=sec)
        self.tls = self.cluster.scheduler_address

    def call(self):
        r = self.client.submit(echo, PAYLOAD, pure=False).result(timeout=CALL_TIMEOUT_S)
        assert r == PAYLOAD

    def concurrent(self, n):
        from distributed import as_completed
        t = time.perf_counter()
        first = [self.client.submit(echo, PAYLOAD, pure=False) for _ in range(min(n, CONCURRENCY))]
        issued = len(first)
        done = 0
        ac = as_completed(first)
        for fut in ac:
            assert fut.result(timeout=CALL_TIMEOUT_S) == PAYLOAD
            done += 1
            if issued < n:
                ac.add(self.client.submit(echo, PAYLOAD, pure=False))
                issued += 1
        assert done == n
        return n / (time.perf_counter() - t)

    def close(self):
        self.client.close(timeout=10)
        self.cluster.close(timeout=10)


def main():
    kind = sys.argv[1]
    peer = CeleryPeer() if kind == 'celery' else DaskPeer()
    deadline = time.monotonic() + 60
    while True:  # the first call waits for the worker to come up, for at most 60 s
        try:
            peer.call()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    import platform
    version = __import__(kind).__version__ if kind == 'celery' else __import__('distributed').__version__
    print(json.dumps({'ready': True, 'python': platform.python_version(), 'version': version,
                      **({'address': peer.tls} if kind == 'dask' else {})}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == 'warm':
            for _ in range(int(cmd[1])):
                peer.call()
            print(json.dumps({'ok': True}), flush=True)
        elif cmd[0] == 'round':
            p50, p99 = sequential(peer.call, int(cmd[1]))
            print(json.dumps({'p50': p50, 'p99': p99, 'throughput': peer.concurrent(int(cmd[2]))}), flush=True)
        elif cmd[0] == 'quit':
            break
    peer.close()


if __name__ == '__main__':
    main()
