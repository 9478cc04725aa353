"""The Redis tier end to end: two ringside pods in front of one origin share a real
redis-server. An entry one pod stored is a hit on the other; purges and invalidations
reach the other pod over pub/sub; Redis dying under load fails no request, and the pods
reconnect when it is back. Every test uses its own namespace."""

import shutil
import subprocess
import threading
import time
import uuid

import ringside_test as rt
from ringside_test import (Origin, Redis, Ringside, control_request, http_request, resp_count,
                           resp_target, wait_for)

CONFIG = """
workers: 2
cache: { memory: 64MiB, header: X-Cache }
redis:
  url: {{redis_url}}
  namespace: {{namespace}}
  connect_timeout: 500ms
  command_timeout: 250ms
  reconnect_max: 1s
  invalidation_delay: 10ms
routes:
  - name: ttl
    match: { prefix: /resp/ttl/ }
    cache: { default_ttl: 60s }
  - name: cached
    match: { prefix: /resp/ }
    cache: {}
  - name: rest
    match: { prefix: / }
"""

# Lines a pod may log while Redis is away.
REDIS_TROUBLE = [r"redis"]
L2 = "ringside_cache_l2_requests_total"
UP = "ringside_redis_up"


def pod(origin, redis, namespace, **kwargs):
    return Ringside(CONFIG, origin, redis_url=redis.url if isinstance(redis, Redis) else redis,
                    namespace=namespace, **kwargs)


def new_namespace():
    return "t" + uuid.uuid4().hex[:12]


def fetch(rs, target, headers=None, method="GET", body=None):
    return http_request(rs.port, method, target, headers, body)


def check(resp, cache=None, body=None, what=""):
    label = f"{what}: " if what else ""
    assert resp.status == 200, f"{label}expected 200, got {resp.status} {resp.headers} {resp.body[:200]!r}"
    if cache is not None:
        got = resp.header_values("X-Cache")
        assert got == [cache], f"{label}expected X-Cache: {cache}, got {got} in {resp.headers}"
    if body is not None:
        assert resp.body == body, f"{label}expected body {body[:80]!r}, got {resp.body[:80]!r}"
    return resp


def origin_body(path, n):
    return f"{path} #{n}\n".encode()


def entries(redis, namespace):
    """The cache entries stored in Redis under namespace."""
    return redis.keys(f"{namespace}:*:e:*")


def objects(rs):
    return control_request(rs, "GET", "/cache/status").json()["objects"]


def wait_up(rs, value, timeout=10.0):
    wait_for(lambda: rs.metric(UP) == value, timeout=timeout,
             message=f"ringside_redis_up == {value} (now {rs.metric(UP)})")


def share(a, b, redis, namespace, path):
    """Store path through pod a, wait for it in Redis, and promote it into b's memory.
    Returns b's answer."""
    before = len(entries(redis, namespace))
    check(fetch(a, path), cache="MISS", what=f"{path} through the first pod")
    wait_for(lambda: len(entries(redis, namespace)) > before, message=f"{path} written to Redis")
    return check(fetch(b, path), cache="HIT", body=origin_body(path, 1), what=f"{path} through the other pod")


def test_an_entry_stored_by_one_pod_is_a_hit_on_the_other():
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, pod(origin, redis, namespace) as a, \
            pod(origin, redis, namespace) as b:
        wait_up(a, 1)
        wait_up(b, 1)
        path = "/resp/ttl/shared"
        share(a, b, redis, namespace, path)
        assert resp_count(origin, path)["count"] == 1, "expected the second pod to answer from Redis"
        b.wait_metric(L2, 1, result="hit")
        # Promoted into b's memory: the next hit does not ask Redis.
        check(fetch(b, path), cache="HIT", body=origin_body(path, 1))
        assert objects(b) == 1, "expected the Redis hit promoted into memory"
        assert b.metric(L2, result="hit") == 1, "expected a memory hit not to ask Redis again"
        # A key nobody stored: an L2 miss, then the origin.
        check(fetch(b, "/resp/ttl/only-b"), cache="MISS")
        b.wait_metric(L2, 1, result="miss")
        assert (b.metric(L2, result="error") or 0) == 0
        assert a.metric("ringside_redis_commands_total", result="ok") > 0
        assert b.metric("ringside_redis_latency_seconds_count") > 0
        # Entries with an explicit lifetime carry it to the other pod: max-age and Age.
        target = resp_target("/resp/explicit", h="Cache-Control: max-age=600")
        check(fetch(a, target), cache="MISS")
        wait_for(lambda: len(entries(redis, namespace)) == 3, message="the third entry in Redis")
        hit = check(fetch(b, target), cache="HIT", body=origin_body("/resp/explicit", 1))
        assert hit.header("Age") is not None and int(hit.header("Age")) <= 2, f"got {hit.headers}"
        ttl = redis.cli("TTL", entries(redis, namespace)[0])
        assert 0 < ttl <= 600, f"expected Redis entries to expire with the response, TTL {ttl}"


def test_concurrent_requests_for_an_entry_in_redis_wait_for_one_lookup():
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, pod(origin, redis, namespace) as a, \
            pod(origin, redis, namespace) as b:
        wait_up(a, 1)
        wait_up(b, 1)
        for round_ in range(3):
            path = f"/resp/ttl/burst{round_}"
            check(fetch(a, path), cache="MISS")
            wait_for(lambda: len(entries(redis, namespace)) == round_ + 1, message=f"{path} in Redis")
            results = rt.parallel(lambda: fetch(b, path), [()] * 40)
            for resp in results:
                assert isinstance(resp, rt.Response), f"{path}: got {resp!r}"
                check(resp, body=origin_body(path, 1), what=f"{path} on the other pod")
                assert resp.header("X-Cache") in ("HIT", "COLLAPSED"), f"{path}: got {resp.headers}"
            assert resp_count(origin, path)["count"] == 1, (
                f"{path}: expected the burst answered from Redis, got {resp_count(origin, path)}")


def test_purges_reach_the_other_pod():
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, pod(origin, redis, namespace) as a, \
            pod(origin, redis, namespace) as b:
        wait_up(a, 1)
        wait_up(b, 1)
        paths = ["/resp/ttl/p1", "/resp/ttl/p2", "/resp/ttl/p3"]
        for path in paths:
            share(a, b, redis, namespace, path)
        assert objects(a) == objects(b) == 3

        answer = control_request(a, "POST", "/cache/purge", {"url": "/resp/ttl/p1"}).json()
        assert answer == {"result": "ok", "purged": 1, "other_pods": True}, f"got {answer}"
        wait_for(lambda: objects(b) == 2, message="the url purge applied on the other pod")
        check(fetch(b, "/resp/ttl/p1"), cache="MISS", body=origin_body("/resp/ttl/p1", 2),
              what="purged url on the other pod (not from Redis either)")

        answer = control_request(a, "POST", "/cache/purge", {"prefix": "/resp/ttl/p2"}).json()
        assert answer["other_pods"] is True and answer["purged"] == 1, f"got {answer}"
        wait_for(lambda: objects(b) == 2, message="the prefix purge applied on the other pod")
        check(fetch(b, "/resp/ttl/p2"), cache="MISS", body=origin_body("/resp/ttl/p2", 2),
              what="purged prefix on the other pod (not from Redis either)")

        answer = control_request(b, "POST", "/cache/purge", {"all": True}).json()
        assert answer["other_pods"] is True, f"got {answer}"
        wait_for(lambda: objects(a) == 0, message="the purge of everything applied on the first pod")
        check(fetch(a, "/resp/ttl/p3"), cache="MISS", body=origin_body("/resp/ttl/p3", 2),
              what="after purging everything (not from Redis either)")
        for kind in ("url", "prefix", "all"):
            assert (b.metric("ringside_cache_purges_total", kind=kind) or 0) >= 1, (
                f"expected the other pod to count the {kind} purge it applied")


def test_purge_by_tag_reaches_the_other_pod():
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, pod(origin, redis, namespace) as a, \
            pod(origin, redis, namespace) as b:
        wait_up(a, 1)
        wait_up(b, 1)
        tagged = resp_target("/resp/tagged", h=["Cache-Control: max-age=600", "Surrogate-Key: red blue"])
        other = resp_target("/resp/other", h=["Cache-Control: max-age=600", "Surrogate-Key: green"])
        for target in (tagged, other):
            check(fetch(a, target), cache="MISS")
        wait_for(lambda: len(entries(redis, namespace)) == 2, message="both entries in Redis")
        for target in (tagged, other):
            check(fetch(b, target), cache="HIT")
        answer = control_request(a, "POST", "/cache/purge", {"tag": "blue"}).json()
        assert answer == {"result": "ok", "purged": 1, "other_pods": True}, f"got {answer}"
        wait_for(lambda: objects(b) == 1, message="the tag purge applied on the other pod")
        check(fetch(b, tagged), cache="MISS", body=origin_body("/resp/tagged", 2))


def test_an_unsafe_method_on_one_pod_invalidates_the_other():
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, pod(origin, redis, namespace) as a, \
            pod(origin, redis, namespace) as b:
        wait_up(a, 1)
        wait_up(b, 1)
        for path in ("/resp/ttl/inv", "/resp/ttl/loc"):
            share(a, b, redis, namespace, path)
        assert fetch(a, "/resp/ttl/inv", method="POST", body=b"x").status == 200
        assert fetch(a, resp_target("/resp/ttl/create", status=201, h="Location: /resp/ttl/loc"),
                     method="PUT", body=b"x").status == 201
        wait_for(lambda: objects(b) == 0, message="both invalidations applied on the other pod")
        assert b.metric("ringside_cache_purged_objects_total", kind="invalidation") == 2
        for path in ("/resp/ttl/inv", "/resp/ttl/loc"):
            check(fetch(b, path), cache="MISS", what=f"{path} on the other pod (not from Redis either)")
            assert resp_count(origin, path)["methods"].get("GET") == 2, (
                f"{path}: expected a second GET at the origin, got {resp_count(origin, path)}")


def test_redis_dying_under_load_fails_no_request():
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, \
            pod(origin, redis, namespace, allow_log_errors=REDIS_TROUBLE) as a, \
            pod(origin, redis, namespace, allow_log_errors=REDIS_TROUBLE) as b:
        wait_up(a, 1)
        wait_up(b, 1)
        hot = [f"/resp/ttl/hot{i}" for i in range(5)]
        for path in hot:
            share(a, b, redis, namespace, path)

        failures, done = [], []
        stop = threading.Event()

        def load(n):
            pods = (a, b)
            i = 0
            while not stop.is_set():
                i += 1
                path = hot[i % len(hot)] if i % 2 else f"/resp/ttl/u{n}-{i}"
                try:
                    resp = fetch(pods[(i // 2) % 2], path)
                    expected = origin_body(path, 1)
                    if resp.status != 200 or resp.body != expected:
                        failures.append((path, resp.status, resp.body[:80]))
                except Exception as e:  # a failed request is what this test looks for
                    failures.append((path, repr(e)))
                done.append(path)

        threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        redis.kill()
        killed_at = len(done)
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(15)
        assert not any(t.is_alive() for t in threads), "load threads still running"
        assert not failures, f"expected no failed request, got {len(failures)}: {failures[:5]}"
        assert killed_at > 50 and len(done) - killed_at > 50, (
            f"expected load before and after the kill, got {killed_at} and {len(done) - killed_at}")
        wait_up(a, 0, timeout=5)
        wait_up(b, 0, timeout=5)

        redis.start()
        wait_up(a, 1, timeout=10)
        wait_up(b, 1, timeout=10)
        hits = b.metric(L2, result="hit")
        path = "/resp/ttl/after-restart"
        share(a, b, redis, namespace, path)
        b.wait_metric(L2, hits + 1, result="hit")
        assert resp_count(origin, path)["count"] == 1


def test_a_hung_redis_delays_requests_by_the_command_timeout_at_most():
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, \
            pod(origin, redis, namespace, allow_log_errors=REDIS_TROUBLE) as a:
        wait_up(a, 1)
        check(fetch(a, "/resp/ttl/before"), cache="MISS")
        wait_for(lambda: len(entries(redis, namespace)) == 1, message="the entry in Redis")
        redis.pause()
        try:
            for i in range(6):
                path = f"/resp/ttl/hung{i}"
                start = time.monotonic()
                check(fetch(a, path), cache="MISS", body=origin_body(path, 1), what=f"{path} with Redis hung")
                took = time.monotonic() - start
                assert took < 1.0, f"{path}: took {took:.2f} s with command_timeout 250ms"
                check(fetch(a, path), cache="HIT", body=origin_body(path, 1))
            assert a.metric("ringside_redis_commands_total", result="timeout") > 0, (
                "expected Redis commands counted as timeouts")
        finally:
            redis.resume()
        wait_up(a, 1, timeout=10)
        check(fetch(a, "/resp/ttl/resumed"), cache="MISS")
        wait_for(lambda: "/resp/ttl/resumed" and len(entries(redis, namespace)) >= 2,
                 message="entries written again once Redis answers")


def test_vary_variants_across_pods():
    # Only the newest variant of a key is shared through Redis (docs/cache.md); what
    # matters first is that no request ever gets another variant's response.
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, pod(origin, redis, namespace) as a, \
            pod(origin, redis, namespace) as b:
        wait_up(a, 1)
        wait_up(b, 1)
        target = resp_target("/resp/vary", h=["Cache-Control: max-age=600", "Vary: Accept-Language"],
                             echo="Accept-Language")
        for lang, keys in (("en", 2), ("de", 3)):  # the key's record, then one key per variant
            check(fetch(a, target, [("Accept-Language", lang)]), cache="MISS",
                  body=f"Accept-Language: {lang}\n".encode())
            wait_for(lambda: len(entries(redis, namespace)) == keys, message=f"the {lang} variant in Redis")
        check(fetch(b, target, [("Accept-Language", "de")]), cache="HIT", body=b"Accept-Language: de\n",
              what="the newest variant on the other pod")
        b.wait_metric(L2, 1, result="hit")
        for lang in ("en", "fr", "de", "en", "fr"):
            resp = check(fetch(b, target, [("Accept-Language", lang)]), what=f"{lang} on the other pod")
            assert resp.body == f"Accept-Language: {lang}\n".encode(), (
                f"{lang} on the other pod got another variant: {resp.body!r} ({resp.header('X-Cache')})")
        assert resp_count(origin, "/resp/vary")["count"] == 4, (
            f"expected en and de from the first pod, en and fr from the other, got {resp_count(origin, '/resp/vary')}")


def test_promtool_accepts_the_cache_and_redis_metrics():
    promtool = shutil.which("promtool")
    if promtool is None:
        raise rt.Skip("promtool not installed (Debian package prometheus)")
    namespace = new_namespace()
    with Redis() as redis, Origin() as origin, pod(origin, redis, namespace) as a:
        wait_up(a, 1)
        for target in ("/resp/ttl/m", "/resp/ttl/m", "/resp/n?h=Cache-Control:%20no-store", "/count"):
            fetch(a, target)
        assert fetch(a, "/resp/ttl/m", method="POST", body=b"x").status == 200
        assert control_request(a, "POST", "/cache/purge", {"all": True}).status == 200
        body = rt.get(a.metrics_port, "/metrics").body
        for name in ("ringside_cache_requests_total", "ringside_cache_objects", "ringside_cache_bytes",
                     "ringside_cache_evictions_total", "ringside_cache_purges_total",
                     "ringside_cache_purged_objects_total", "ringside_cache_l2_requests_total",
                     "ringside_redis_up", "ringside_redis_commands_total", "ringside_redis_latency_seconds"):
            assert f"\n{name}".encode() in body, f"expected {name} in /metrics"
        check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert check.returncode == 0, (
            f"promtool check metrics failed: {check.stdout.decode()} {check.stderr.decode()}")


def test_redis_down_at_start():
    namespace = new_namespace()
    port = rt.free_port()
    with Origin() as origin, Ringside(CONFIG, origin, redis_url=f"redis://127.0.0.1:{port}/0",
                                      namespace=namespace, allow_log_errors=REDIS_TROUBLE) as rs:
        path = "/resp/ttl/alone"
        check(fetch(rs, path), cache="MISS")
        check(fetch(rs, path), cache="HIT", body=origin_body(path, 1))
        assert rs.metric(UP) == 0, f"expected ringside_redis_up 0 without Redis, got {rs.metric(UP)}"
        status = control_request(rs, "GET", "/cache/status").json()
        assert status["redis"] is True and status["objects"] == 1, f"got {status}"
        with Redis(port=port) as redis:
            wait_up(rs, 1, timeout=10)
            check(fetch(rs, "/resp/ttl/later"), cache="MISS")
            wait_for(lambda: len(entries(redis, namespace)) == 1, message="an entry written once Redis is up")


if __name__ == "__main__":
    rt.main()
