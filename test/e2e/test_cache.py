"""The memory cache end to end: what RFC 9111 lets a shared cache store and serve, Age,
revalidation, stale serving, invalidation by unsafe methods, purges on the control port,
miss collapsing, the memory bound and the cache metrics. The origin's /resp/ endpoint
makes each response from its query and counts what reached it per path, so every test
knows exactly which requests got past the cache."""

import time

import ringside_test as rt
from ringside_test import (Origin, Ringside, control_request, http_date, http_request, parallel,
                           resp_count, resp_target, wait_for)

# Routes, most specific first. "q", "sie" and "swr" key on the path alone (query: none),
# so a later request can change what the origin does (status=500, delay_ms, a new
# Cache-Control) while it still hits the stored entry.
CONFIG = """
workers: 2
cache:
  memory: 64MiB
  max_object: 1MiB
  header: X-Cache
  collapse_timeout: 5s
routes:
  - name: q
    match: { prefix: /resp/q/ }
    cache: { key: { query: none } }
  - name: sie
    match: { prefix: /resp/sie/ }
    cache: { stale_if_error: 30s, key: { query: none } }
  - name: swr
    match: { prefix: /resp/swr/ }
    cache: { stale_while_revalidate: 30s, key: { query: none } }
  - name: ttl
    match: { prefix: /resp/ttl/ }
    cache: { default_ttl: 60s }
  - name: keyed
    match: { prefix: /resp/keyed/ }
    cache: { key: { query: list, query_params: [a], headers: [X-Tenant] } }
  - name: cookies
    match: { prefix: /resp/cookies/ }
    cache: { ignore_set_cookie: true }
  - name: insist
    match: { prefix: /resp/insist/ }
    cache: { ignore_no_cache: true }
  - name: cached
    match: { prefix: /resp/ }
    cache: {}
  - name: rest
    match: { prefix: / }
"""

REQUESTS = "ringside_cache_requests_total"
MAX_AGE_60 = "Cache-Control: max-age=60"


def fetch(rs, target, headers=None, method="GET", body=None, host="localhost"):
    return http_request(rs.port, method, target, headers, body, host=host)


def check(resp, status=200, cache=None, body=None, what=""):
    """Assert the status, the single X-Cache value and the body of resp."""
    label = f"{what}: " if what else ""
    assert resp.status == status, (
        f"{label}expected status {status}, got {resp.status} {resp.headers} {resp.body[:200]!r}")
    if cache is not None:
        got = resp.header_values("X-Cache")
        assert got == [cache], f"{label}expected X-Cache: {cache}, got {got} in {resp.headers}"
    if body is not None:
        assert resp.body == body, f"{label}expected body {body[:80]!r}, got {resp.body[:80]!r}"
    return resp


def count(origin, path):
    return resp_count(origin, path)["count"]


def origin_body(path, n):
    """The origin's default /resp/ body: the path and its request count."""
    return f"{path} #{n}\n".encode()


# ---- the origin's /resp/ endpoint itself, so a failure below points at ringside --------

def test_origin_resp_endpoint():
    with Origin() as origin:
        port = origin.port
        r = http_request(port, "GET", resp_target("/resp/o/a", h=["X-A: 1", "Cache-Control: max-age=5"]))
        assert (r.status, r.body) == (200, b"/resp/o/a #1\n"), f"default body: got {r!r} {r.body!r}"
        assert (r.header("X-A"), r.header("Cache-Control"), r.header("X-Resp-Count")) == ("1", "max-age=5", "1"), (
            f"expected the h= fields and X-Resp-Count: 1, got {r.headers}")
        r = http_request(port, "PUT", resp_target("/resp/o/a", status=201, body="made"), body=b"x")
        assert (r.status, r.body) == (201, b"made"), f"status= and body=: got {r!r} {r.body!r}"

        r = http_request(port, "GET", resp_target("/resp/o/big", size=100000, chunked=True))
        assert r.chunked and r.body == rt.pattern(100000), f"size= chunked=1: got {r!r}"
        r = http_request(port, "HEAD", resp_target("/resp/o/big", size=1000))
        assert (r.header("Content-Length"), r.body) == ("1000", b""), f"HEAD size=1000: got {r!r}"

        tag, date = '"v1"', http_date(1700000000)
        target = resp_target("/resp/o/cond", etag=tag, lm=date, h="X-Kept: yes")
        r = http_request(port, "GET", target)
        assert (r.status, r.header("ETag"), r.header("Last-Modified")) == (200, tag, date), f"got {r!r}"
        for headers in ([("If-None-Match", 'W/"v1"')], [("If-None-Match", '"x", "v1"')],
                        [("If-None-Match", "*")], [("If-Modified-Since", date)],
                        [("If-Modified-Since", http_date(1700000100))]):
            r = http_request(port, "GET", target, headers)
            assert (r.status, r.header("ETag"), r.header("X-Kept"), r.body) == (304, tag, "yes", b""), (
                f"{headers}: expected a 304 with ETag and the h= fields, got {r!r}")
        for headers in ([("If-None-Match", '"v2"')], [("If-Modified-Since", http_date(1699999999))],
                        [("If-None-Match", '"v2"'), ("If-Modified-Since", date)]):
            r = http_request(port, "GET", target, headers)
            assert r.status == 200, f"{headers}: expected 200, got {r!r}"

        r = http_request(port, "GET", resp_target("/resp/o/echo", echo=["Accept-Language", "X-Absent"]),
                         [("Accept-Language", "de")])
        assert r.body == b"Accept-Language: de\n", f"echo=: got {r.body!r}"

        start = time.monotonic()
        r = http_request(port, "GET", resp_target("/resp/o/slow", delay_ms=300))
        assert r.status == 200 and time.monotonic() - start >= 0.3, "delay_ms=300 answered early"

        results = parallel(lambda: http_request(port, "POST", "/resp/o/many?x=1", [("X-N", "7")], b"").status,
                           [()] * 100)
        assert results == [200] * 100, f"expected 100 answers, got {results}"
        seen = resp_count(origin, "/resp/o/many")
        assert seen["count"] == 100 and seen["methods"] == {"POST": 100}, f"expected 100 POSTs, got {seen}"
        assert seen["last_headers"].get("x-n") == "7", f"expected last_headers with x-n, got {seen}"
        assert resp_count(origin, "/resp/o/a")["methods"] == {"GET": 1, "PUT": 1}
        assert resp_count(origin, "/resp/o/none") == {"count": 0, "methods": {}, "last_headers": {}}
        rt.resp_reset(origin)
        assert count(origin, "/resp/o/many") == 0, "expected /resp-count/reset to clear the counts"


# ---- storing and hitting -------------------------------------------------------------

def test_miss_then_hit_with_age():
    path = "/resp/basic"
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        target = resp_target(path, h=MAX_AGE_60)
        first = check(fetch(rs, target), cache="MISS", body=origin_body(path, 1), what="first")
        second = check(fetch(rs, target), cache="HIT", body=origin_body(path, 1), what="second")
        age = second.header("Age")
        assert age is not None and age.isdigit() and int(age) <= 1, f"expected Age 0 or 1 on a hit, got {age!r}"
        assert second.header("X-Resp-Count") == first.header("X-Resp-Count") == "1", (
            f"expected the stored response, got {second.headers}")
        assert count(origin, path) == 1, "expected one origin request for a miss and a hit"
        # The origin's Age counts (RFC 9111 §4.2.3): stored 100 s old, Age is at least that.
        aged = resp_target("/resp/aged", h=["Cache-Control: max-age=600", "Age: 100"])
        check(fetch(rs, aged), cache="MISS")
        hit = check(fetch(rs, aged), cache="HIT")
        assert 100 <= int(hit.header("Age")) <= 102, f"expected Age about 100, got {hit.header('Age')!r}"
        # Age beyond max-age: stale on arrival and nothing to revalidate with.
        old = resp_target("/resp/old", h=["Cache-Control: max-age=50", "Age: 100"])
        fetch(rs, old)
        resp = check(fetch(rs, old), body=origin_body("/resp/old", 2), what="entry older than max-age")
        assert resp.header("X-Cache") != "HIT", f"expected no hit for an entry older than max-age, got {resp.headers}"
        rs.wait_metric(REQUESTS, 2, route="cached", result="hit")
        wait_for(lambda: rs.metric(REQUESTS, route="cached", result="miss") +
                 rs.metric(REQUESTS, route="cached", result="uncacheable") == 4,
                 message="4 misses (or uncacheable answers) counted")


def test_access_log_of_a_hit():
    path = "/resp/logged"
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        target = resp_target(path, h=MAX_AGE_60)
        check(fetch(rs, target), cache="MISS")
        hit_id = check(fetch(rs, target), cache="HIT").header("X-Request-Id")
        line = rs.wait_log(lambda l: l.get("msg") == "access" and l.get("request_id") == hit_id,
                           what="the access log line of the hit")
        assert (line["status"], line["route"], line["target"]) == (200, "cached", target), f"got {line}"
        # No backend took part: its time cannot exceed the request's.
        assert 0 <= line["upstream_ms"] <= line["duration_ms"], (
            f"expected a hit's upstream_ms within its duration_ms, got {line}")


def test_only_get_and_head_are_answered_from_the_cache():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        get_target = resp_target("/resp/methods", h=MAX_AGE_60)
        body = check(fetch(rs, get_target), cache="MISS").body
        head = check(fetch(rs, get_target, method="HEAD"), cache="HIT", body=b"", what="HEAD after GET")
        assert head.header("Content-Length") == str(len(body)), (
            f"expected HEAD from the stored GET with Content-Length {len(body)}, got {head.headers}")
        for _ in range(2):
            check(fetch(rs, resp_target("/resp/options", h=MAX_AGE_60), method="OPTIONS"), cache="BYPASS")
        assert count(origin, "/resp/options") == 2, "expected OPTIONS never answered from the cache"
        # A HEAD miss is forwarded as HEAD and stores nothing for GET.
        head_first = resp_target("/resp/head-first", h=MAX_AGE_60)
        check(fetch(rs, head_first, method="HEAD"), body=b"")
        check(fetch(rs, head_first), cache="MISS", body=origin_body("/resp/head-first", 2))
        assert resp_count(origin, "/resp/head-first")["methods"] == {"HEAD": 1, "GET": 1}
        # POST responses are not stored, even when they say they may be.
        post_target = resp_target("/resp/post", h=MAX_AGE_60)
        for i in (1, 2):
            check(fetch(rs, post_target, method="POST", body=b"x"), cache="BYPASS",
                  body=origin_body("/resp/post", i))
        assert count(origin, "/resp/post") == 2, "expected no POST answered from the cache"
        # Range and If-Match go to the origin untouched.
        for headers in ([("Range", "bytes=0-3")], [("If-Match", '"x"')]):
            check(fetch(rs, get_target, headers), cache="BYPASS", what=str(headers))
        assert count(origin, "/resp/methods") == 3, f"got {resp_count(origin, '/resp/methods')}"
        rs.wait_metric(REQUESTS, 6, route="cached", result="bypass")  # and the two OPTIONS


def test_freshness_from_max_age_s_maxage_and_expires():
    now = time.time()
    fresh = {  # stored and fresh for a minute
        "/resp/f/max-age": [MAX_AGE_60],
        "/resp/f/expires": [f"Expires: {http_date(now + 100)}"],
        "/resp/f/max-age-over-expires": [MAX_AGE_60, f"Expires: {http_date(now - 100)}"],
        "/resp/f/public": ["Cache-Control: public, max-age=60"],
    }
    at_once_stale = {  # never served from the cache
        "/resp/f/expires-past": [f"Expires: {http_date(now - 100)}"],
        "/resp/f/expires-invalid": ["Expires: 0"],
        "/resp/f/max-age-0": ["Cache-Control: max-age=0"],
    }
    short = {  # fresh for 2 s
        "/resp/f/short": ["Cache-Control: max-age=2"],
        "/resp/f/s-maxage": ["Cache-Control: max-age=100, s-maxage=2"],
    }
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        stored_at = time.monotonic()
        for table in (fresh, at_once_stale, short):
            for path, fields in table.items():
                fetch(rs, resp_target(path, h=fields))
        for path, fields in fresh.items():
            check(fetch(rs, resp_target(path, h=fields)), cache="HIT", what=path)
        for path, fields in short.items():
            check(fetch(rs, resp_target(path, h=fields)), cache="HIT", what=path)
        for path, fields in at_once_stale.items():
            resp = check(fetch(rs, resp_target(path, h=fields)), body=origin_body(path, 2), what=path)
            assert resp.header("X-Cache") != "HIT", f"{path}: expected no hit, got {resp.headers}"
        # s-maxage wins over max-age in a shared cache: both expire after 2 s.
        time.sleep(max(0.0, stored_at + 2.05 - time.monotonic()))
        for path, fields in short.items():
            check(fetch(rs, resp_target(path, h=fields)), cache="MISS", body=origin_body(path, 2),
                  what=f"{path} after 2 s")
        for path in fresh:
            assert count(origin, path) == 1, f"{path}: expected 1 origin request, got {count(origin, path)}"


def test_responses_that_must_not_be_stored():
    never = {
        "/resp/n/no-store": ["Cache-Control: max-age=60, no-store"],
        "/resp/n/private": ["Cache-Control: private, max-age=60"],
        "/resp/n/set-cookie": [MAX_AGE_60, "Set-Cookie: id=1"],
        "/resp/n/vary-star": [MAX_AGE_60, "Vary: *"],
        "/resp/n/no-freshness-500": [],
    }
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        for path, fields in never.items():
            status = 500 if path.endswith("-500") else None
            for i in (1, 2):
                check(fetch(rs, resp_target(path, h=fields, status=status)), status=status or 200,
                      cache="UNCACHEABLE", body=origin_body(path, i), what=f"{path} #{i}")
        # The client's no-store keeps its answer out of the cache too.
        target = resp_target("/resp/n/request-no-store", h=MAX_AGE_60)
        check(fetch(rs, target, [("Cache-Control", "no-store")]), cache="UNCACHEABLE", what="request no-store")
        check(fetch(rs, target), cache="MISS", body=origin_body("/resp/n/request-no-store", 2))
        # ignore_set_cookie stores the response without the cookie.
        target = resp_target("/resp/cookies/a", h=[MAX_AGE_60, "Set-Cookie: id=secret"])
        first = check(fetch(rs, target), cache="MISS")
        assert first.header("Set-Cookie") == "id=secret", f"expected the cookie on the miss, got {first.headers}"
        hit = check(fetch(rs, target), cache="HIT")
        assert hit.header("Set-Cookie") is None, f"expected no Set-Cookie on a hit, got {hit.headers}"
        rs.wait_metric(REQUESTS, 2 * len(never) + 1, route="cached", result="uncacheable")


def test_authorization_needs_explicit_permission():
    auth = [("Authorization", "Basic dXNlcjpwYXNz")]
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        target = resp_target("/resp/auth/plain", h=MAX_AGE_60)
        check(fetch(rs, target, auth), body=origin_body("/resp/auth/plain", 1))
        check(fetch(rs, target, auth), body=origin_body("/resp/auth/plain", 2), what="no permission")
        check(fetch(rs, target), body=origin_body("/resp/auth/plain", 3), what="no permission, then anonymous")
        for name, cc in (("public", "public, max-age=60"), ("s-maxage", "s-maxage=60"),
                         ("must-revalidate", "max-age=60, must-revalidate")):
            path = f"/resp/auth/{name}"
            target = resp_target(path, h=f"Cache-Control: {cc}")
            check(fetch(rs, target, auth), cache="MISS")
            check(fetch(rs, target, auth), cache="HIT", body=origin_body(path, 1), what=name)
            assert count(origin, path) == 1, f"{name}: expected the response stored"


def test_request_cache_control():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        # only-if-cached: 504 without asking the origin, the entry once there is one.
        target = resp_target("/resp/rc/only", h=MAX_AGE_60)
        check(fetch(rs, target, [("Cache-Control", "only-if-cached")]), status=504, what="only-if-cached miss")
        assert count(origin, "/resp/rc/only") == 0, "expected only-if-cached never to reach the origin"
        fetch(rs, target)
        check(fetch(rs, target, [("Cache-Control", "only-if-cached")]), cache="HIT", what="only-if-cached hit")

        # no-cache without validators: a full request; its answer replaces the entry.
        path = "/resp/rc/nocache"
        target = resp_target(path, h=MAX_AGE_60)
        check(fetch(rs, target), cache="MISS", body=origin_body(path, 1))
        check(fetch(rs, target, [("Cache-Control", "no-cache")]), body=origin_body(path, 2), what="no-cache")
        check(fetch(rs, target), cache="HIT", body=origin_body(path, 2), what="after no-cache")
        check(fetch(rs, target, [("Pragma", "no-cache")]), body=origin_body(path, 3), what="Pragma: no-cache")
        check(fetch(rs, target), cache="HIT", body=origin_body(path, 3))

        # no-cache with a validator: revalidated, the origin answers 304.
        path = "/resp/rc/etag"
        target = resp_target(path, h=MAX_AGE_60, etag='"e1"')
        check(fetch(rs, target), cache="MISS")
        check(fetch(rs, target, [("Cache-Control", "no-cache")]), cache="REVALIDATED",
              body=origin_body(path, 1), what="no-cache with ETag")
        seen = resp_count(origin, path)
        assert seen["count"] == 2 and seen["last_headers"].get("if-none-match") == '"e1"', (
            f"expected a conditional GET upstream with If-None-Match: \"e1\", got {seen}")

        # The route's ignore_no_cache answers from the cache anyway.
        path = "/resp/insist/a"
        target = resp_target(path, h=MAX_AGE_60)
        fetch(rs, target)
        for headers in ([("Cache-Control", "no-cache")], [("Pragma", "no-cache")], [("Cache-Control", "max-age=0")]):
            check(fetch(rs, target, headers), cache="HIT", what=f"ignore_no_cache {headers}")
        assert count(origin, path) == 1


def test_request_max_age_0_goes_to_the_origin():
    # A reload's max-age=0 asks for a response validated now (the route's
    # ignore_no_cache lists it with no-cache): an entry stored this second is not enough.
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/rc/max-age-0"
        target = resp_target(path, h=MAX_AGE_60)
        check(fetch(rs, target), cache="MISS", body=origin_body(path, 1))
        check(fetch(rs, target, [("Cache-Control", "max-age=0")]), body=origin_body(path, 2), what="max-age=0")
        check(fetch(rs, target), cache="HIT", body=origin_body(path, 2))
        path = "/resp/rc/max-age-0-etag"
        target = resp_target(path, h=MAX_AGE_60, etag='"m1"')
        check(fetch(rs, target), cache="MISS")
        check(fetch(rs, target, [("Cache-Control", "max-age=0")]), cache="REVALIDATED",
              body=origin_body(path, 1), what="max-age=0 with ETag")
        assert resp_count(origin, path)["last_headers"].get("if-none-match") == '"m1"'


def test_vary_and_key_fields():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/vary"
        target = resp_target(path, h=[MAX_AGE_60, "Vary: Accept-Language"], echo="Accept-Language")
        en, de = [("Accept-Language", "en")], [("Accept-Language", "de")]
        check(fetch(rs, target, en), cache="MISS", body=b"Accept-Language: en\n")
        check(fetch(rs, target, de), cache="MISS", body=b"Accept-Language: de\n")
        check(fetch(rs, target), cache="MISS", body=b"", what="no Accept-Language")
        check(fetch(rs, target, en), cache="HIT", body=b"Accept-Language: en\n")
        check(fetch(rs, target, de), cache="HIT", body=b"Accept-Language: de\n")
        check(fetch(rs, target), cache="HIT", body=b"", what="no Accept-Language again")
        assert count(origin, path) == 3, f"expected one origin request per variant, got {count(origin, path)}"

        # key.query: list [a] and key.headers [X-Tenant] on route "keyed".
        def keyed(a, b, tenant):
            return fetch(rs, resp_target("/resp/keyed/x", h=MAX_AGE_60, a=a, b=b), [("X-Tenant", tenant)])
        check(keyed(1, 1, "t1"), cache="MISS")
        check(keyed(1, 2, "t1"), cache="HIT", what="another b, same a")
        check(keyed(2, 1, "t1"), cache="MISS", what="another a")
        check(keyed(1, 1, "t2"), cache="MISS", what="another X-Tenant")
        assert count(origin, "/resp/keyed/x") == 3

        # The host is part of the key, lowercase and without the default port.
        target = resp_target("/resp/hosts", h=MAX_AGE_60)
        check(fetch(rs, target, host="example.com"), cache="MISS")
        check(fetch(rs, target, host="Example.COM:80"), cache="HIT", what="same host, other spelling")
        check(fetch(rs, target, host="example.org"), cache="MISS", what="another host")


def test_revalidation_with_etag_and_last_modified():
    lm = http_date(time.time() - 3600)
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        # Route "q" keys on the path, so the later requests' queries change the origin's
        # answer (a longer max-age on the 304, a new ETag) and still find the entry.
        cases = {"/resp/q/etag": dict(etag='"v1"'), "/resp/q/lm": dict(lm=lm),
                 "/resp/q/changed": dict(etag='"v1"')}
        for path, validator in cases.items():
            check(fetch(rs, resp_target(path, h="Cache-Control: max-age=1", **validator)), cache="MISS")
        time.sleep(1.05)
        for path in ("/resp/q/etag", "/resp/q/lm"):
            target = resp_target(path, h=MAX_AGE_60, **cases[path])
            check(fetch(rs, target), cache="REVALIDATED", body=origin_body(path, 1), what=path)
            seen = resp_count(origin, path)
            assert seen["count"] == 2, f"{path}: expected one revalidation, got {seen}"
            sent = seen["last_headers"]
            if "etag" in cases[path]:
                assert sent.get("if-none-match") == '"v1"', f"expected If-None-Match: \"v1\", got {sent}"
            else:
                assert sent.get("if-modified-since") == lm, f"expected If-Modified-Since: {lm}, got {sent}"
            # The 304 refreshed the entry with its max-age=60: a hit, nothing upstream.
            hit = check(fetch(rs, target), cache="HIT", body=origin_body(path, 1), what=f"{path} after 304")
            assert hit.header("Cache-Control") == "max-age=60", (
                f"expected the 304's Cache-Control in the refreshed entry, got {hit.headers}")
            assert count(origin, path) == 2
        # A changed resource: the 200 replaces the entry.
        path = "/resp/q/changed"
        target = resp_target(path, h=MAX_AGE_60, etag='"v2"')
        resp = fetch(rs, target)
        assert (resp.status, resp.body, resp.header("ETag")) == (200, origin_body(path, 2), '"v2"'), (
            f"expected the new representation, got {resp!r} {resp.body!r}")
        check(fetch(rs, target), cache="HIT", body=origin_body(path, 2), what="after the change")
        rs.wait_metric(REQUESTS, 2, route="q", result="revalidated")


def test_no_cache_responses_are_revalidated_before_every_use():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/nc"
        target = resp_target(path, h="Cache-Control: no-cache, max-age=60", etag='"n1"')
        check(fetch(rs, target), cache="MISS")
        for i in (2, 3):
            check(fetch(rs, target), cache="REVALIDATED", body=origin_body(path, 1), what=f"use {i}")
            seen = resp_count(origin, path)
            assert seen["count"] == i and seen["last_headers"].get("if-none-match") == '"n1"', (
                f"use {i}: expected a conditional request upstream, got {seen}")


def test_a_304_updates_the_stored_fields():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/q/update"
        check(fetch(rs, resp_target(path, h=["Cache-Control: max-age=1", "X-Version: 1"], etag='"u1"')),
              cache="MISS")
        time.sleep(1.05)
        fields = [MAX_AGE_60, "X-Version: 2", "Set-Cookie: s=1"]
        resp = check(fetch(rs, resp_target(path, h=fields, etag='"u1"')), cache="REVALIDATED",
                     body=origin_body(path, 1))
        assert resp.header_values("X-Version") == ["2"], f"expected the 304's X-Version, got {resp.headers}"
        hit = check(fetch(rs, path), cache="HIT", body=origin_body(path, 1))
        assert hit.header_values("X-Version") == ["2"], f"expected X-Version 2 stored, got {hit.headers}"
        assert hit.header("Set-Cookie") is None, f"expected no Set-Cookie stored from a 304, got {hit.headers}"
        assert hit.header("Content-Length") == str(len(origin_body(path, 1))), f"got {hit.headers}"


def test_a_304_that_forbids_storing_ends_the_entry():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        for cc in ("private, max-age=60", "no-store, max-age=60"):
            path = "/resp/q/" + cc.split(",")[0]
            check(fetch(rs, resp_target(path, h="Cache-Control: max-age=1", etag='"p1"')), cache="MISS")
        time.sleep(1.05)
        for cc in ("private, max-age=60", "no-store, max-age=60"):
            path = "/resp/q/" + cc.split(",")[0]
            target = resp_target(path, h=f"Cache-Control: {cc}", etag='"p1"')
            resp = check(fetch(rs, target), body=origin_body(path, 1), what=f"304 with {cc}")
            again = check(fetch(rs, target), what=f"after a 304 with {cc}")
            assert again.header("X-Cache") != "HIT", (
                f"{cc}: the refreshed response says it must not be stored, yet it is a hit: {again.headers}")


def test_a_head_request_never_stores_an_empty_body():
    # HEAD requests that go upstream (revalidation of a stale entry, no-cache) get a
    # response without a body: it must not replace the stored GET response.
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/q/head"
        check(fetch(rs, resp_target(path, h="Cache-Control: max-age=1", etag='"h1"')), cache="MISS")
        time.sleep(1.05)
        changed = resp_target(path, h=MAX_AGE_60, etag='"h2"')
        head = check(fetch(rs, changed, method="HEAD"), body=b"", what="HEAD of a changed resource")
        assert head.header("ETag") == '"h2"', f"expected the new ETag on the HEAD answer, got {head.headers}"
        resp = fetch(rs, changed)
        assert resp.status == 200 and resp.body == origin_body(path, 3), (
            f"expected a full GET answer after the HEAD, got {resp!r} {resp.body!r}")
        path = "/resp/head-no-cache"
        target = resp_target(path, h=MAX_AGE_60)
        check(fetch(rs, target), cache="MISS", body=origin_body(path, 1))
        check(fetch(rs, target, [("Cache-Control", "no-cache")], method="HEAD"), body=b"")
        resp = fetch(rs, target)
        assert resp.status == 200 and resp.body in (origin_body(path, 1), origin_body(path, 3)), (
            f"expected a full body after a no-cache HEAD, got {resp!r} {resp.body!r}")


def test_client_conditionals_answered_from_the_cache():
    lm = http_date(time.time() - 3600)
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/cond"
        target = resp_target(path, h=MAX_AGE_60, etag='"c1"', lm=lm)
        body = check(fetch(rs, target), cache="MISS").body
        for headers in ([("If-None-Match", '"c1"')], [("If-None-Match", 'W/"c1"')],
                        [("If-None-Match", '"x", "c1"')], [("If-Modified-Since", lm)],
                        [("If-Modified-Since", http_date(time.time()))]):
            resp = check(fetch(rs, target, headers), status=304, body=b"", what=str(headers))
            assert resp.header("ETag") == '"c1"', f"{headers}: expected ETag on the 304, got {resp.headers}"
        for headers in ([("If-None-Match", '"c2"')], [("If-Modified-Since", http_date(time.time() - 7200))],
                        [("If-None-Match", '"c2"'), ("If-Modified-Since", lm)]):
            check(fetch(rs, target, headers), cache="HIT", body=body, what=str(headers))
        assert count(origin, path) == 1, f"expected every conditional answered here, got {resp_count(origin, path)}"


def test_client_conditional_on_a_stale_entry():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/q/stale-cond"
        check(fetch(rs, resp_target(path, h="Cache-Control: max-age=1", etag='"s1"')), cache="MISS")
        time.sleep(1.05)
        # ringside revalidates with its own validator; the origin's 304 refreshes the entry
        # and, as the client's If-None-Match matches it, the client gets a 304 too.
        target = resp_target(path, h=MAX_AGE_60, etag='"s1"')
        resp = check(fetch(rs, target, [("If-None-Match", '"s1"')]), status=304, body=b"")
        assert resp.header("ETag") == '"s1"', f"expected ETag on the 304, got {resp.headers}"
        seen = resp_count(origin, path)
        assert seen["count"] == 2 and seen["last_headers"].get("if-none-match") == '"s1"', f"got {seen}"
        check(fetch(rs, target), cache="HIT", body=origin_body(path, 1), what="after the refresh")
        assert count(origin, path) == 2


def test_stale_while_revalidate_refreshes_once_in_the_background():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        # The response's own stale-while-revalidate (route q), then the route's (swr).
        cases = {"/resp/q/swr": "stale-while-revalidate=30", "/resp/swr/a": ""}
        for path, swr in cases.items():
            cc = ", ".join(filter(None, ["Cache-Control: max-age=1", swr]))
            check(fetch(rs, resp_target(path, h=cc)), cache="MISS", body=origin_body(path, 1))
        time.sleep(1.05)
        for path, swr in cases.items():
            # The refresh is slow, and fresh for a minute once it is stored (the keys
            # ignore the query); stale answers must not wait for it.
            cc = ", ".join(filter(None, ["Cache-Control: max-age=60", swr]))
            slow = resp_target(path, h=cc, delay_ms=800)
            start = time.monotonic()
            for i in range(5):
                check(fetch(rs, slow), cache="STALE", body=origin_body(path, 1), what=f"{path} #{i}")
            assert time.monotonic() - start < 0.6, f"{path}: stale answers waited for the refresh"
            wait_for(lambda: fetch(rs, slow).header("X-Cache") == "HIT", timeout=5,
                     message=f"{path}: the background refresh to store a fresh entry")
            check(fetch(rs, slow), cache="HIT", body=origin_body(path, 2), what=f"{path} refreshed")
            assert count(origin, path) == 2, f"{path}: expected exactly one refresh, got {resp_count(origin, path)}"


def test_stale_if_error():
    with Origin() as origin, Ringside(CONFIG, origin, allow_log_errors=[r"upstream", r"connect"]) as rs:
        cases = {"/resp/sie/route": "Cache-Control: max-age=1",
                 "/resp/q/directive": "Cache-Control: max-age=1, stale-if-error=30",
                 "/resp/q/none": "Cache-Control: max-age=1"}
        for path, cc in cases.items():
            check(fetch(rs, resp_target(path, h=cc)), cache="MISS", body=origin_body(path, 1))
        time.sleep(1.05)
        for path in ("/resp/sie/route", "/resp/q/directive"):
            check(fetch(rs, resp_target(path, status=500)), cache="STALE", body=origin_body(path, 1),
                  what=f"{path} with the origin answering 500")
            check(fetch(rs, resp_target(path, status=503)), cache="STALE", body=origin_body(path, 1))
            assert count(origin, path) == 3, f"{path}: expected both errors to come from the origin"
        check(fetch(rs, resp_target("/resp/q/none", status=500)), status=500,
              body=origin_body("/resp/q/none", 2), what="no stale-if-error")
        origin.stop()
        for path in ("/resp/sie/route", "/resp/q/directive"):
            check(fetch(rs, path), cache="STALE", body=origin_body(path, 1), what=f"{path} with the origin down")
        resp = fetch(rs, "/resp/q/none")
        assert resp.status in (502, 504), f"expected 502 or 504 without stale-if-error, got {resp!r}"
        rs.wait_metric(REQUESTS, 3, route="sie", result="stale")


def test_must_revalidate_is_never_served_stale():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        for cc in ("max-age=1, must-revalidate", "max-age=1, proxy-revalidate", "s-maxage=1"):
            path = "/resp/sie/" + cc.split(", ")[-1].split("=")[0]
            check(fetch(rs, resp_target(path, h=f"Cache-Control: {cc}")), cache="MISS")
        time.sleep(1.05)
        for cc in ("must-revalidate", "proxy-revalidate", "s-maxage"):
            path = "/resp/sie/" + cc
            resp = fetch(rs, resp_target(path, status=500))
            assert resp.status == 500 and resp.body == origin_body(path, 2), (
                f"{cc}: expected the origin's 500, not the stale entry, got {resp!r} {resp.body!r}")


def test_stale_if_error_on_a_backend_timeout():
    config = CONFIG.replace("workers: 2\n", "workers: 2\nupstream: { address: '{{origin}}', response_timeout: 1s }\n")
    with Origin() as origin, Ringside(config, origin, allow_log_errors=[r"upstream", r"timeout"]) as rs:
        path = "/resp/sie/slow"
        check(fetch(rs, resp_target(path, h="Cache-Control: max-age=1")), cache="MISS")
        time.sleep(1.05)
        start = time.monotonic()
        check(fetch(rs, resp_target(path, delay_ms=3000)), cache="STALE", body=origin_body(path, 1),
              what="the origin slower than upstream.response_timeout")
        assert time.monotonic() - start < 2.5, "expected the stale answer once the response timeout passed"
        resp = fetch(rs, resp_target("/resp/q/slow-none", delay_ms=3000))
        assert resp.status == 504, f"expected 504 without a stale entry, got {resp!r}"


def test_unsafe_methods_invalidate():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        # Route ttl stores any 200 for 60 s: Location and Content-Location name plain paths.
        paths = ["/resp/ttl/a", "/resp/ttl/loc", "/resp/ttl/cloc", "/resp/ttl/abs", "/resp/ttl/foreign",
                 "/resp/ttl/failed"]
        for path in paths:
            check(fetch(rs, path), cache="MISS")
            check(fetch(rs, path), cache="HIT")
        for method in ("POST", "PUT", "DELETE"):
            resp = fetch(rs, "/resp/ttl/a", method=method, body=b"x")
            assert resp.status == 200, f"{method}: expected 200, got {resp!r}"
            check(fetch(rs, "/resp/ttl/a"), cache="MISS", what=f"after {method}")
        fields = ["Location: /resp/ttl/loc", "Content-Location: /resp/ttl/cloc"]
        assert fetch(rs, resp_target("/resp/ttl/new", status=201, h=fields), method="POST", body=b"x").status == 201
        fields = ["Location: http://localhost/resp/ttl/abs", "Content-Location: http://elsewhere.example/resp/ttl/foreign"]
        assert fetch(rs, resp_target("/resp/ttl/new", status=303, h=fields), method="POST", body=b"x").status == 303
        assert fetch(rs, resp_target("/resp/ttl/failed", status=500), method="DELETE").status == 500
        check(fetch(rs, "/resp/ttl/loc"), cache="MISS", what="named by Location")
        check(fetch(rs, "/resp/ttl/cloc"), cache="MISS", what="named by Content-Location")
        check(fetch(rs, "/resp/ttl/abs"), cache="MISS", what="named by an absolute Location on our host")
        check(fetch(rs, "/resp/ttl/foreign"), cache="HIT", what="another host's URL")
        check(fetch(rs, "/resp/ttl/failed"), cache="HIT", what="after a DELETE that failed")
        assert (rs.metric("ringside_cache_purges_total", kind="invalidation") or 0) >= 5, (
            "expected 5 invalidating requests counted in ringside_cache_purges_total{kind=\"invalidation\"}")
        removed = rs.metric("ringside_cache_purged_objects_total", kind="invalidation")
        assert removed == 6, f"expected 6 entries removed by invalidations, got {removed}"


def test_large_objects_pass_through_and_chunked_ones_are_stored():
    size = (1 << 20) + 100000  # over max_object (1 MiB)
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        for chunked in (False, True):
            path = f"/resp/big-{'chunked' if chunked else 'length'}"
            target = resp_target(path, h=MAX_AGE_60, size=size, chunked=chunked)
            for i in (1, 2):
                resp = check(fetch(rs, target), what=f"{path} #{i}")
                assert resp.body == rt.pattern(size), (
                    f"{path} #{i}: expected all {size} bytes, got {len(resp.body)}")
                assert resp.header("X-Cache") in ("MISS", "UNCACHEABLE"), f"{path} #{i}: got {resp.headers}"
            assert count(origin, path) == 2, f"{path}: expected nothing stored, got {resp_count(origin, path)}"
        path = "/resp/chunked"
        target = resp_target(path, h=MAX_AGE_60, size=300000, chunked=True)
        first = check(fetch(rs, target), cache="MISS")
        assert first.body == rt.pattern(300000), f"expected the chunked body, got {len(first.body)} bytes"
        hit = check(fetch(rs, target), cache="HIT")
        assert not hit.chunked and hit.header("Content-Length") == "300000", (
            f"expected the stored chunked response sent with Content-Length, got {hit.headers}")
        assert hit.body == rt.pattern(300000), f"expected the 300000 pattern bytes, got {len(hit.body)}"
        assert count(origin, path) == 1


def test_a_body_of_exactly_max_object_is_stored():
    # max_object is the largest body stored ("larger responses are passed through").
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/exactly-max"
        target = resp_target(path, h=MAX_AGE_60, size=1 << 20)
        check(fetch(rs, target), cache="MISS")
        hit = check(fetch(rs, target), cache="HIT", what="a body of exactly max_object")
        assert hit.body == rt.pattern(1 << 20)
        assert count(origin, path) == 1


def test_concurrent_misses_collapse_into_one_origin_request():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/collapse"
        target = resp_target(path, h=MAX_AGE_60, delay_ms=500)
        results = parallel(lambda: fetch(rs, target), [()] * 100)
        failures = [r for r in results if not isinstance(r, rt.Response) or r.status != 200]
        assert not failures, f"expected 100 answers 200, got {failures[:5]}"
        bodies = {r.body for r in results}
        assert bodies == {origin_body(path, 1)}, f"expected one body for all, got {bodies}"
        assert count(origin, path) == 1, f"expected 1 origin request, got {resp_count(origin, path)}"
        kinds = sorted(r.header("X-Cache") for r in results)
        assert kinds.count("MISS") == 1 and set(kinds) <= {"MISS", "COLLAPSED", "HIT"}, (
            f"expected one MISS and COLLAPSED (or HIT) for the rest, got {kinds}")
        rs.wait_metric(REQUESTS, kinds.count("COLLAPSED"), route="cached", result="collapsed")

        # An uncacheable answer releases the waiters at once: each asks the origin itself.
        path = "/resp/collapse-no-store"
        target = resp_target(path, h="Cache-Control: no-store", delay_ms=500)
        start = time.monotonic()
        results = parallel(lambda: fetch(rs, target), [()] * 100)
        elapsed = time.monotonic() - start
        failures = [r for r in results if not isinstance(r, rt.Response) or r.status != 200]
        assert not failures, f"expected 100 answers 200, got {failures[:5]}"
        assert count(origin, path) == 100, f"expected 100 origin requests, got {resp_count(origin, path)}"
        assert elapsed < 4.0, f"waiters took {elapsed:.1f} s: released only by collapse_timeout (5 s)?"


def test_collapse_timeout_and_clients_that_leave():
    config = CONFIG.replace("collapse_timeout: 5s", "collapse_timeout: 500ms")
    with Origin() as origin, Ringside(config, origin) as rs:
        # The first request takes longer than collapse_timeout: the others go themselves.
        path = "/resp/collapse-slow"
        target = resp_target(path, h=MAX_AGE_60, delay_ms=1500)
        first = rt.Parallel(lambda: fetch(rs, target), [()])
        wait_for(lambda: count(origin, path) == 1, message="the first request at the origin")
        start = time.monotonic()
        results = parallel(lambda: fetch(rs, target), [()] * 10)
        assert all(isinstance(r, rt.Response) and r.status == 200 for r in results + first.results()), (
            f"expected every request answered, got {results}")
        assert time.monotonic() - start < 2.5, "expected waiters to give up after collapse_timeout"
        assert count(origin, path) == 11, f"expected each waiter at the origin, got {resp_count(origin, path)}"

        # The first client leaves; so do some waiters. The rest are still answered.
        path = "/resp/collapse-left"
        target = resp_target(path, h=MAX_AGE_60, delay_ms=400)
        leaver = rt.connect(rs.port)
        leaver.sendall(rt.build_request("GET", target))
        wait_for(lambda: count(origin, path) == 1, message="the first request at the origin")
        quitters = [rt.connect(rs.port) for _ in range(5)]
        for sock in quitters:
            sock.sendall(rt.build_request("GET", target))
        stayers = rt.Parallel(lambda: fetch(rs, target), [()] * 5)
        time.sleep(0.1)
        for sock in quitters + [leaver]:
            sock.close()
        results = stayers.results()
        assert all(isinstance(r, rt.Response) and r.status == 200 for r in results), f"got {results}"
        assert {r.body for r in results} <= {origin_body(path, n) for n in range(1, 8)}, f"got {results}"
        check(fetch(rs, target), cache="HIT", what="stored by someone")
        assert count(origin, path) <= 6, f"got {resp_count(origin, path)}"


def test_collapsed_requests_get_their_own_variant():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        path = "/resp/collapse-vary"
        target = resp_target(path, h=[MAX_AGE_60, "Vary: Accept-Language"], echo="Accept-Language",
                             delay_ms=500)
        languages = ["en", "de", "fr"] * 20
        results = parallel(lambda lang: fetch(rs, target, [("Accept-Language", lang)]),
                           [(lang,) for lang in languages])
        for lang, resp in zip(languages, results):
            assert isinstance(resp, rt.Response) and resp.status == 200, f"{lang}: got {resp!r}"
            assert resp.body == f"Accept-Language: {lang}\n".encode(), (
                f"a request for {lang} got another variant: {resp.body!r} ({resp.header('X-Cache')})")
        for lang in ("en", "de", "fr"):
            check(fetch(rs, target, [("Accept-Language", lang)]), cache="HIT",
                  body=f"Accept-Language: {lang}\n".encode(), what=f"{lang} afterwards")
        assert count(origin, path) <= 60


def test_control_port_purges():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        tagged = {"/resp/ttl/p/a": "t1", "/resp/ttl/p/b": "t1 t2", "/resp/ttl/p/c": "t3",
                  "/resp/ttl/o/d": "t2", "/resp/ttl/o/e": "t4"}
        def fill():
            for path, tags in tagged.items():
                fetch(rs, resp_target(path, h=f"Surrogate-Key: {tags}"))
        def cached(path):
            target = resp_target(path, h=f"Surrogate-Key: {tagged[path]}")
            return fetch(rs, target, [("Cache-Control", "only-if-cached")]).status == 200
        def purge(body, purged):
            resp = control_request(rs, "POST", "/cache/purge", body)
            assert resp.status == 200, f"{body}: expected 200, got {resp!r} {resp.body!r}"
            answer = resp.json()
            assert answer == {"result": "ok", "purged": purged, "other_pods": False}, (
                f"{body}: expected {purged} purged, got {answer}")

        fill()
        status = control_request(rs, "GET", "/cache/status").json()
        assert status["objects"] == 5 and status["bytes"] > 0, f"expected 5 objects, got {status}"
        for key in ("evictions", "fills_in_progress", "redis", "redis_generation"):
            assert key in status, f"expected {key} in /cache/status, got {status}"
        assert status["redis"] is False and status["fills_in_progress"] == 0, f"got {status}"
        assert rs.metric("ringside_cache_objects") == 5, "expected ringside_cache_objects 5"

        url = "/resp/ttl/p/a?" + resp_target("/x", h="Surrogate-Key: t1").split("?")[1]
        purge({"url": url, "host": "elsewhere.example"}, 0)
        purge({"url": url}, 1)
        assert not cached("/resp/ttl/p/a") and cached("/resp/ttl/p/b"), "url purge removed the wrong entries"
        purge({"tag": "t2"}, 2)
        assert [cached(p) for p in tagged] == [False, False, True, False, True], "tag purge"
        purge({"prefix": "/resp/ttl/p/"}, 1)
        assert [cached(p) for p in tagged] == [False, False, False, False, True], "prefix purge"
        purge({"all": True}, 1)
        assert not any(cached(p) for p in tagged), "expected nothing cached after purging all"
        status = control_request(rs, "GET", "/cache/status").json()
        assert (status["objects"], status["bytes"]) == (0, 0), f"expected an empty store, got {status}"
        assert (rs.metric("ringside_cache_objects"), rs.metric("ringside_cache_bytes")) == (0, 0), (
            "expected ringside_cache_objects and ringside_cache_bytes 0 after purging all")

        fill()
        purge({"prefix": "/resp/ttl/", "host": "LOCALHOST"}, 5)
        for bad in ("{not json", "[1]", {"url": "no-slash"}, {}, {"url": "/a", "tag": "t"}):
            resp = control_request(rs, "POST", "/cache/purge", bad)
            assert resp.status == 400, f"{bad!r}: expected 400, got {resp!r} {resp.body!r}"
        for kind, n in (("url", 2), ("tag", 1), ("prefix", 2), ("all", 1)):
            assert rs.metric("ringside_cache_purges_total", kind=kind) == n, (
                f"expected ringside_cache_purges_total{{kind={kind}}} {n}, got "
                f"{rs.metric('ringside_cache_purges_total', kind=kind)}")
        assert rs.metric("ringside_cache_purged_objects_total", kind="prefix") == 6


def test_memory_bound_and_eviction():
    limit = 2 << 20
    for eviction in ("s3fifo", "lru"):
        config = (f"workers: 2\ncache: {{ memory: 2MiB, max_object: 256KiB, eviction: {eviction} }}\n"
                  "routes:\n  - match: { prefix: /resp/ }\n    cache: { default_ttl: 60s }\n")
        with Origin() as origin, Ringside(config, origin) as rs:
            for i in range(150):
                resp = fetch(rs, resp_target(f"/resp/m/{i}", size=30000))
                assert resp.status == 200 and resp.body == rt.pattern(30000), f"{eviction} #{i}: got {resp!r}"
                if i % 25 == 24:
                    used = rs.metric("ringside_cache_bytes")
                    assert used is not None and 0 < used <= limit, (
                        f"{eviction}: expected ringside_cache_bytes <= {limit} after {i + 1} objects, got {used}")
            status = control_request(rs, "GET", "/cache/status").json()
            assert 0 < status["bytes"] <= limit and 0 < status["objects"] < 150, f"{eviction}: got {status}"
            assert status["objects"] * 30000 <= limit, f"{eviction}: {status['objects']} objects cannot fit"
            evicted = rs.metric("ringside_cache_evictions_total")
            assert evicted and evicted > 0 and evicted == status["evictions"], (
                f"{eviction}: expected evictions > 0 in both places, got {evicted} and {status}")
            assert rs.metric("ringside_cache_objects") == status["objects"]
            # The newest object survived.
            check(fetch(rs, resp_target("/resp/m/149", size=30000)), body=rt.pattern(30000))
            assert count(origin, "/resp/m/149") == 1, f"{eviction}: expected the newest object still cached"


def test_warm_urls_are_fetched_at_start_and_on_reload():
    config = CONFIG.replace("  collapse_timeout: 5s\n",
                            '  collapse_timeout: 5s\n  warm: [ /resp/ttl/warm1, "http://example.com/resp/ttl/warm2" ]\n')
    with Origin() as origin, Ringside(config, origin) as rs:
        for path in ("/resp/ttl/warm1", "/resp/ttl/warm2"):
            wait_for(lambda: count(origin, path) == 1, message=f"{path} warmed")
            assert resp_count(origin, path)["last_headers"].get("host") == (
                "localhost" if path.endswith("1") else "example.com")
        wait_for(lambda: control_request(rs, "GET", "/cache/status").json()["objects"] == 2,
                 message="two warmed objects")
        check(fetch(rs, "/resp/ttl/warm1"), cache="HIT", body=origin_body("/resp/ttl/warm1", 1))
        check(fetch(rs, "/resp/ttl/warm2", host="example.com"), cache="HIT",
              body=origin_body("/resp/ttl/warm2", 1))
        assert control_request(rs, "POST", "/cache/purge", {"all": True}).status == 200
        rs.reload()
        rs.wait_metric("ringside_config_reloads_total", 1, result="ok")
        wait_for(lambda: count(origin, "/resp/ttl/warm2") == 2, message="warm2 fetched again on reload")
        wait_for(lambda: fetch(rs, "/resp/ttl/warm1", [("Cache-Control", "only-if-cached")]).status == 200,
                 message="warm1 stored again after the reload")
        assert count(origin, "/resp/ttl/warm1") == 2


if __name__ == "__main__":
    rt.main()
