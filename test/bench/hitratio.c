/* ringside-hitratio: replays synthetic request traces against the in-memory cache store
 * and prints hit ratio and byte hit ratio per eviction policy at equal memory.
 *
 * A trace is Zipf-distributed over a fixed key population, each key with a fixed size
 * drawn from a lognormal distribution, all from one seed. Optionally it is mixed with
 * scans: sequential one-time passes over the least popular keys, which flush an LRU. Every
 * request is a get; a miss builds the entry (its body bytes touched, as a real response's
 * would be) and puts it. Each replay runs in its own child process, so the peak resident
 * memory of one store can be reported beside the bound it was given.
 *
 * A measurement, never a pass/fail test. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/entry.h"
#include "cache/store.h"

#define MAX_LIST 16

struct options {
    size_t requests;
    uint32_t keys;
    double alphas[MAX_LIST];
    size_t num_alphas;
    double memory_pct[MAX_LIST];
    size_t num_memory;
    enum cache_evict_policy policies[MAX_LIST];
    size_t num_policies;
    unsigned shards[MAX_LIST];
    size_t num_shards;
    double scan_fraction; /* of the Zipf requests, added as scans; 0: no scan mix */
    unsigned scan_bursts;
    double size_median;
    double size_sigma;
    uint64_t seed;
    bool tsv;
};

/* One trace: a key per request, and per key its size, name and hash. */
struct trace {
    uint32_t *requests;
    size_t num_requests;
    uint32_t num_keys;
    uint32_t *sizes;
    char **names;
    uint32_t *name_lens;
    uint64_t *hashes;
    size_t working_set; /* store charges of every key the trace asks for */
    size_t distinct;
};

struct result {
    uint64_t hits, requests;
    uint64_t hit_bytes, requested_bytes;
    uint64_t evictions;
    size_t objects_end, bytes_end;
    double seconds;
    long baseline_kib; /* resident before the replay */
    int error;         /* 0, or the -errno a put returned */
};

/* splitmix64: small, seedable, good enough for traces. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state)
{
    return (double)(next_random(state) >> 11) / 9007199254740992.0; /* [0, 1) */
}

static double lognormal(uint64_t *state, double median, double sigma)
{
    double u1 = uniform(state), u2 = uniform(state);
    double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
    return median * exp(sigma * z);
}

static const char *policy_name(enum cache_evict_policy p)
{
    switch (p) {
    case CACHE_EVICT_S3FIFO:
        return "s3fifo";
    case CACHE_EVICT_LRU:
        return "lru";
    case CACHE_EVICT_SIEVE:
        return "sieve";
    }
    return "?";
}

static struct cache_entry *build_entry(const struct trace *t, uint32_t key, bool touch)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                               "Cache-Control: max-age=60\r\nContent-Length: 0000\r\n";
    struct cache_entry *e = cache_entry_new();
    if (e == NULL || cache_entry_set_key(e, t->names[key], t->name_lens[key]) != 0)
        goto fail;
    e->status = 200;
    e->head = slice_copy(head, sizeof(head) - 1);
    e->body = slice_new(t->sizes[key]);
    if (e->head == NULL || e->body == NULL)
        goto fail;
    if (touch)
        memset(e->body->data, (int)(key & 0xff), e->body->len);
    cache_entry_finish(e);
    return e;
fail:
    cache_entry_unref(e);
    return NULL;
}

static void free_trace(struct trace *t)
{
    if (t->names != NULL)
        for (uint32_t k = 0; k < t->num_keys; k++)
            free(t->names[k]);
    free(t->names);
    free(t->name_lens);
    free(t->hashes);
    free(t->sizes);
    free(t->requests);
    memset(t, 0, sizeof(*t));
}

/* Keys and sizes depend on the seed only, so every trace of a session shares them; the
 * popularity order is a seeded permutation, so popularity says nothing about size or
 * shard. */
static int make_trace(const struct options *o, double alpha, bool scans, struct trace *t)
{
    memset(t, 0, sizeof(*t));
    uint32_t n = o->keys;
    uint64_t rng = o->seed;
    size_t scan_requests = 0, scan_keys = 0;
    if (scans) {
        scan_requests = (size_t)((double)o->requests * o->scan_fraction);
        scan_keys = scan_requests / o->scan_bursts;
        if (scan_keys > n / 2)
            scan_keys = n / 2;
        scan_requests = scan_keys * o->scan_bursts;
    }
    t->num_keys = n;
    t->num_requests = o->requests + scan_requests;
    t->sizes = calloc(n, sizeof(*t->sizes));
    t->names = calloc(n, sizeof(*t->names));
    t->name_lens = calloc(n, sizeof(*t->name_lens));
    t->hashes = calloc(n, sizeof(*t->hashes));
    t->requests = calloc(t->num_requests, sizeof(*t->requests));
    uint32_t *by_rank = calloc(n, sizeof(*by_rank));
    double *cdf = calloc(n, sizeof(*cdf));
    bool *seen = calloc(n, sizeof(*seen));
    if (t->sizes == NULL || t->names == NULL || t->name_lens == NULL || t->hashes == NULL ||
        t->requests == NULL || by_rank == NULL || cdf == NULL || seen == NULL)
        goto fail;

    for (uint32_t k = 0; k < n; k++) {
        char name[64];
        int len = snprintf(name, sizeof(name), "bench.example\n/objects/%" PRIu32 "\n", k);
        double size = lognormal(&rng, o->size_median, o->size_sigma);
        t->sizes[k] = size < 16 ? 16 : size > 4 << 20 ? 4u << 20 : (uint32_t)size;
        if ((t->names[k] = strdup(name)) == NULL)
            goto fail;
        t->name_lens[k] = (uint32_t)len;
        t->hashes[k] = cache_key_hash(name, (size_t)len);
        by_rank[k] = k;
    }
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(next_random(&rng) % (i + 1));
        uint32_t tmp = by_rank[i];
        by_rank[i] = by_rank[j];
        by_rank[j] = tmp;
    }

    double sum = 0;
    for (uint32_t r = 0; r < n; r++) {
        sum += 1.0 / pow((double)(r + 1), alpha);
        cdf[r] = sum;
    }
    /* Scans come in bursts spread evenly through the trace; each is one sequential pass
     * over the scan_keys least popular keys. */
    uint64_t trace_rng = o->seed ^ ((uint64_t)(alpha * 1000) << 32);
    size_t out = 0, zipf_done = 0;
    for (unsigned burst = 0; burst <= o->scan_bursts; burst++) {
        size_t until = scans ? o->requests * (burst + 1) / (o->scan_bursts + 1) : o->requests;
        for (; zipf_done < until; zipf_done++) {
            double u = uniform(&trace_rng) * sum;
            uint32_t lo = 0, hi = n - 1;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (cdf[mid] < u)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            t->requests[out++] = by_rank[lo];
        }
        if (!scans || burst == o->scan_bursts)
            continue;
        for (size_t i = 0; i < scan_keys; i++)
            t->requests[out++] = by_rank[n - scan_keys + i];
    }
    t->num_requests = out;

    for (size_t i = 0; i < out; i++) {
        uint32_t k = t->requests[i];
        if (seen[k])
            continue;
        seen[k] = true;
        struct cache_entry *e = build_entry(t, k, false);
        if (e == NULL)
            goto fail;
        t->working_set += cache_store_charge(NULL, e);
        t->distinct++;
        cache_entry_unref(e);
    }
    free(by_rank);
    free(cdf);
    free(seen);
    return 0;
fail:
    free(by_rank);
    free(cdf);
    free(seen);
    free_trace(t);
    return -ENOMEM;
}

static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f == NULL)
        return -1;
    int got = fscanf(f, "%ld %ld", &pages, &resident);
    fclose(f);
    return got == 2 ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void replay(const struct trace *t, const struct cache_store_options *so, struct result *r)
{
    memset(r, 0, sizeof(*r));
    struct cache_store *s = NULL;
    int rc = cache_store_new(so, &s);
    if (rc != 0) {
        r->error = rc;
        return;
    }
    /* Everything the replay reads is resident before the baseline is taken. */
    volatile uint64_t touch = 0;
    for (size_t i = 0; i < t->num_requests; i += 512)
        touch += t->requests[i];
    for (uint32_t k = 0; k < t->num_keys; k++)
        touch += t->sizes[k] + t->hashes[k] + (uint8_t)t->names[k][0];
    (void)touch;
    r->baseline_kib = resident_kib();

    double start = now_seconds();
    for (size_t i = 0; i < t->num_requests; i++) {
        uint32_t k = t->requests[i];
        r->requests++;
        r->requested_bytes += t->sizes[k];
        struct cache_entry *e =
            cache_store_get(s, t->hashes[k], t->names[k], t->name_lens[k], NULL, NULL);
        if (e != NULL) {
            r->hits++;
            r->hit_bytes += cache_entry_body_len(e);
            cache_entry_unref(e);
            continue;
        }
        e = build_entry(t, k, true);
        if (e == NULL) {
            r->error = -ENOMEM;
            break;
        }
        rc = cache_store_put(s, e);
        cache_entry_unref(e);
        if (rc != 0 && rc != -E2BIG) {
            r->error = rc;
            break;
        }
    }
    r->seconds = now_seconds() - start;
    struct cache_store_stats st;
    cache_store_stats(s, &st);
    r->evictions = st.evictions;
    r->objects_end = st.objects;
    r->bytes_end = st.bytes;
    cache_store_free(s);
}

/* Replay in a child so that its peak RSS is this store's alone. */
static int replay_in_child(const struct trace *t, const struct cache_store_options *so,
                           struct result *r, long *peak_kib)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -errno;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    if (pid == 0) {
        close(fds[0]);
        struct result res;
        replay(t, so, &res);
        ssize_t w = write(fds[1], &res, sizeof(res));
        _exit(w == (ssize_t)sizeof(res) ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], r, sizeof(*r));
    close(fds[0]);
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0)
        return -errno;
    if (got != (ssize_t)sizeof(*r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -EIO;
    *peak_kib = ru.ru_maxrss;
    return 0;
}

static int parse_doubles(const char *arg, double *out, size_t *n)
{
    char *copy = strdup(arg), *save = NULL;
    if (copy == NULL)
        return -ENOMEM;
    *n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        double v = strtod(tok, &end);
        if (*end != '\0' || !(v > 0) || *n == MAX_LIST) {
            free(copy);
            return -EINVAL;
        }
        out[(*n)++] = v;
    }
    free(copy);
    return *n > 0 ? 0 : -EINVAL;
}

static int parse_policies(const char *arg, struct options *o)
{
    char *copy = strdup(arg), *save = NULL;
    if (copy == NULL)
        return -ENOMEM;
    o->num_policies = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        enum cache_evict_policy p;
        if (strcmp(tok, "s3fifo") == 0)
            p = CACHE_EVICT_S3FIFO;
        else if (strcmp(tok, "lru") == 0)
            p = CACHE_EVICT_LRU;
        else if (strcmp(tok, "sieve") == 0)
            p = CACHE_EVICT_SIEVE;
        else
            p = (enum cache_evict_policy)-1;
        if ((int)p < 0 || o->num_policies == MAX_LIST) {
            free(copy);
            return -EINVAL;
        }
        o->policies[o->num_policies++] = p;
    }
    free(copy);
    return o->num_policies > 0 ? 0 : -EINVAL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ringside-hitratio [options]\n"
            "  --requests N      Zipf requests per trace (default 1000000)\n"
            "  --keys N          key population (default 100000)\n"
            "  --alpha LIST      Zipf exponents (default 0.8,1.0,1.2)\n"
            "  --memory LIST     store memory in %% of the trace's working set (default 1,5,10)\n"
            "  --policy LIST     s3fifo,lru,sieve (default all three)\n"
            "  --shards LIST     store shards (default 64)\n"
            "  --scan F          also replay each trace mixed with scans adding F x requests\n"
            "                    (default 0.1; 0: Zipf only)\n"
            "  --scan-bursts N   scans per trace, spread evenly (default 4)\n"
            "  --size-median B   median object size in bytes (default 4096)\n"
            "  --size-sigma S    sigma of the lognormal size distribution (default 1.0)\n"
            "  --seed N          (default 1)\n"
            "  --tsv             tab-separated output\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){
        .requests = 1000000, .keys = 100000, .alphas = {0.8, 1.0, 1.2}, .num_alphas = 3,
        .memory_pct = {1, 5, 10}, .num_memory = 3,
        .policies = {CACHE_EVICT_S3FIFO, CACHE_EVICT_LRU, CACHE_EVICT_SIEVE}, .num_policies = 3,
        .shards = {CACHE_STORE_DEFAULT_SHARDS}, .num_shards = 1, .scan_fraction = 0.1,
        .scan_bursts = 4, .size_median = 4096, .size_sigma = 1.0, .seed = 1,
    };
    static const struct option longopts[] = {
        {"requests", required_argument, NULL, 'r'}, {"keys", required_argument, NULL, 'k'},
        {"alpha", required_argument, NULL, 'a'},    {"memory", required_argument, NULL, 'm'},
        {"policy", required_argument, NULL, 'p'},   {"shards", required_argument, NULL, 's'},
        {"scan", required_argument, NULL, 'S'},     {"scan-bursts", required_argument, NULL, 'b'},
        {"size-median", required_argument, NULL, 'M'},
        {"size-sigma", required_argument, NULL, 'g'},
        {"seed", required_argument, NULL, 'e'},     {"tsv", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int c;
    double list[MAX_LIST];
    size_t n;
    char *end;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        errno = 0;
        switch (c) {
        case 'r':
            o->requests = strtoull(optarg, &end, 10);
            if (*end != '\0' || o->requests == 0 || errno != 0)
                return -EINVAL;
            break;
        case 'k': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end != '\0' || v < 2 || v > UINT32_MAX || errno != 0)
                return -EINVAL;
            o->keys = (uint32_t)v;
            break;
        }
        case 'a':
            if (parse_doubles(optarg, o->alphas, &o->num_alphas) != 0)
                return -EINVAL;
            break;
        case 'm':
            if (parse_doubles(optarg, o->memory_pct, &o->num_memory) != 0)
                return -EINVAL;
            break;
        case 'p':
            if (parse_policies(optarg, o) != 0)
                return -EINVAL;
            break;
        case 's':
            if (parse_doubles(optarg, list, &n) != 0)
                return -EINVAL;
            for (size_t i = 0; i < n; i++)
                o->shards[i] = (unsigned)list[i];
            o->num_shards = n;
            break;
        case 'S':
            o->scan_fraction = strtod(optarg, &end);
            if (*end != '\0' || o->scan_fraction < 0 || o->scan_fraction > 1)
                return -EINVAL;
            break;
        case 'b': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end != '\0' || v == 0 || v > 1000)
                return -EINVAL;
            o->scan_bursts = (unsigned)v;
            break;
        }
        case 'M':
            o->size_median = strtod(optarg, &end);
            if (*end != '\0' || !(o->size_median >= 16))
                return -EINVAL;
            break;
        case 'g':
            o->size_sigma = strtod(optarg, &end);
            if (*end != '\0' || !(o->size_sigma >= 0))
                return -EINVAL;
            break;
        case 'e':
            o->seed = strtoull(optarg, &end, 10);
            if (*end != '\0' || errno != 0)
                return -EINVAL;
            break;
        case 't':
            o->tsv = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -EINVAL;
        }
    }
    return optind == argc ? 0 : -EINVAL;
}

static void print_header(const struct options *o)
{
    if (o->tsv) {
        printf("mix\talpha\tmemory_pct\tmemory_bytes\tshards\tpolicy\thit_ratio\tbyte_hit_ratio"
               "\tevictions\tpeak_rss_over_baseline_kib\tmreq_per_s\n");
        return;
    }
    printf("%-9s %5s %6s %9s %6s %-7s %9s %9s %10s %15s %7s\n", "mix", "alpha", "memory",
           "MiB", "shards", "policy", "hit", "byte hit", "evictions", "RSS/memory", "Mreq/s");
}

static void print_row(const struct options *o, const char *mix, double alpha, double pct,
                      size_t memory, unsigned shards, enum cache_evict_policy policy,
                      const struct result *r, long peak_kib)
{
    double hit = r->requests ? (double)r->hits / (double)r->requests : 0;
    double byte_hit = r->requested_bytes ? (double)r->hit_bytes / (double)r->requested_bytes : 0;
    long over = peak_kib - r->baseline_kib;
    double mreq = r->seconds > 0 ? (double)r->requests / r->seconds / 1e6 : 0;
    if (o->tsv) {
        printf("%s\t%.2f\t%g\t%zu\t%u\t%s\t%.4f\t%.4f\t%" PRIu64 "\t%ld\t%.2f\n", mix, alpha, pct,
               memory, shards, policy_name(policy), hit, byte_hit, r->evictions, over, mreq);
        return;
    }
    char rss[32];
    snprintf(rss, sizeof(rss), "%.1f/%.1f", (double)over / 1024, (double)memory / 1048576);
    printf("%-9s %5.2f %5g%% %9.1f %6u %-7s %9.4f %9.4f %10" PRIu64 " %15s %7.2f\n", mix, alpha,
           pct, (double)memory / 1048576, shards, policy_name(policy), hit, byte_hit,
           r->evictions, rss, mreq);
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse_options(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (!o.tsv) {
        printf("ringside-hitratio: %zu Zipf requests over %" PRIu32 " keys, sizes lognormal "
               "(median %.0f B, sigma %.2f), seed %" PRIu64 "\n",
               o.requests, o.keys, o.size_median, o.size_sigma, o.seed);
        if (o.scan_fraction > 0)
            printf("zipf+scan: plus %u scans, sequential passes over the least popular keys, "
                   "%.0f%% of the Zipf requests in all\n",
                   o.scan_bursts, o.scan_fraction * 100);
        printf("memory: %% of the trace's working set (store charges of every key it asks "
               "for); RSS/memory: peak resident MiB of the replay above its start, beside the "
               "bound\n\n");
    }
    print_header(&o);
    for (int mix = 0; mix < (o.scan_fraction > 0 ? 2 : 1); mix++) {
        for (size_t a = 0; a < o.num_alphas; a++) {
            struct trace t;
            if (make_trace(&o, o.alphas[a], mix == 1, &t) != 0) {
                fprintf(stderr, "ringside-hitratio: out of memory building the trace\n");
                return 1;
            }
            if (!o.tsv)
                printf("-- %s alpha %.2f: %zu requests, %zu distinct keys, working set %.1f MiB\n",
                       mix ? "zipf+scan" : "zipf", o.alphas[a], t.num_requests, t.distinct,
                       (double)t.working_set / 1048576);
            for (size_t m = 0; m < o.num_memory; m++) {
                size_t memory = (size_t)((double)t.working_set * o.memory_pct[m] / 100);
                for (size_t sh = 0; sh < o.num_shards; sh++) {
                    for (size_t p = 0; p < o.num_policies; p++) {
                        struct cache_store_options so = {
                            .memory = memory, .shards = o.shards[sh], .policy = o.policies[p]};
                        struct result r;
                        long peak = 0;
                        int rc = replay_in_child(&t, &so, &r, &peak);
                        if (rc == 0 && r.error != 0)
                            rc = r.error;
                        if (rc != 0) {
                            fprintf(stderr, "ringside-hitratio: replay failed: %s\n",
                                    strerror(-rc));
                            free_trace(&t);
                            return 1;
                        }
                        print_row(&o, mix ? "zipf+scan" : "zipf", o.alphas[a], o.memory_pct[m],
                                  memory, o.shards[sh], o.policies[p], &r, peak);
                        fflush(stdout);
                    }
                }
            }
            free_trace(&t);
        }
    }
    return 0;
}
