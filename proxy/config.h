/* ringside.yaml: parse, validate and freeze the configuration.
 *
 * cfg_load builds a complete struct cfg from a file or fails with a message that names
 * file:line:column. The result is immutable: the runtime only reads it, and a reload
 * builds a new one and swaps it in. Durations are milliseconds, sizes bytes. */
#ifndef RINGSIDE_CONFIG_H
#define RINGSIDE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum cfg_io_backend { CFG_IO_AUTO, CFG_IO_URING, CFG_IO_EPOLL };
enum cfg_log_level { CFG_LOG_DEBUG, CFG_LOG_INFO, CFG_LOG_WARN, CFG_LOG_ERROR };

/* "host:port", "[v6]:port" or ":port". A literal IP is parsed at load; a host name is
 * kept as text and resolved later, off the worker threads (see resolved). */
struct cfg_addr {
    char *text;  /* as written, for logs and metrics */
    char *host;  /* without brackets; "0.0.0.0" for ":port" */
    uint16_t port;
    bool resolved; /* sa holds a literal address */
    struct sockaddr_storage sa;
    socklen_t sa_len;
};

struct cfg_upstream {
    struct cfg_addr address;
    uint64_t connect_timeout;  /* ms; default 1s */
    uint64_t response_timeout; /* ms, until the response head; default 30s */
    uint64_t idle_timeout;     /* ms an idle pooled connection is kept; default 60s */
    uint32_t pool_size;        /* idle keep-alive connections kept per worker; default 64 */
    bool retry_idempotent;     /* retry once on a reused connection found closed; default true */
};

struct cfg_limits {
    uint32_t max_connections;  /* client connections per process; over it: 503; default 10000 */
    uint32_t max_request_line; /* default 8 KiB (414) */
    uint32_t max_head;         /* default 32 KiB (431) */
    uint32_t max_headers;      /* default 100 (431) */
    uint32_t max_chunk_ext;    /* default 1 KiB (400) */
    uint64_t max_body;         /* default 64 MiB (413); 0 = unlimited */
    uint32_t max_output;       /* bytes queued for one connection before its source is paused; default 256 KiB */
    uint32_t recv_buffers;     /* provided receive buffers per worker, a power of two; default 256 */
    uint32_t recv_buffer_size; /* bytes each; default 16 KiB */
};

struct cfg_timeouts {
    uint64_t header; /* ms to receive a complete request head; default 10s (408) */
    uint64_t idle;   /* ms a keep-alive client may stay silent; default 60s */
    uint64_t send;   /* ms a client may take to accept queued bytes; default 60s */
    uint64_t drain;  /* ms to finish in-flight requests after SIGTERM; default 25s */
};

struct cfg_log {
    enum cfg_log_level level; /* default info */
    bool access;              /* one JSON line per request; default true */
};

#define CFG_MAX_MODULES 8

struct cfg_route {
    char *name;        /* metrics label; default: the prefix */
    char *prefix;      /* match.prefix; default "/" */
    uint32_t methods;  /* match.methods as a bitmask of 1u << enum http1_method; 0 = all */
    void *modules[CFG_MAX_MODULES]; /* per-route module sections, NULL when absent */
};

struct cfg {
    char *path;                  /* the file it came from */
    struct cfg_addr listen;      /* default 0.0.0.0:8080 */
    uint32_t workers;            /* resolved: "auto" becomes the CPU quota */
    bool workers_auto;
    enum cfg_io_backend io_backend; /* default auto */
    struct cfg_upstream upstream;   /* address required */
    struct cfg_addr metrics_listen; /* default 0.0.0.0:9090 */
    struct cfg_addr control_listen; /* default 127.0.0.1:9091 */
    struct cfg_limits limits;
    struct cfg_timeouts timeouts;
    struct cfg_log log;
    struct cfg_route *routes;    /* in file order; the first match wins */
    size_t num_routes;           /* a catch-all "default" route is appended when none matches "/" */
    void *modules[CFG_MAX_MODULES]; /* top-level module sections, NULL when absent */
};

/* ---- module sections ----------------------------------------------------------------
 * The core knows nothing of the modules wired in by main (cache, ...). A module
 * registers the keys it reads, at the top level or inside each route, before any load;
 * the loader then reads them with the same error messages as its own keys, and frees
 * what it allocated for them. */

enum cfg_kind {
    CFG_K_DURATION,    /* uint64_t ms */
    CFG_K_SIZE64,      /* uint64_t bytes */
    CFG_K_COUNT32,     /* uint32_t */
    CFG_K_BOOL,        /* bool */
    CFG_K_STRING,      /* char * (non-empty unless min is 0) */
    CFG_K_STRING_LIST, /* struct cfg_strings: a list of strings */
    CFG_K_WORD,        /* int: index of the value in .words */
    CFG_K_SECTION,     /* a nested mapping described by .fields */
};

struct cfg_strings {
    char **items;
    size_t count;
};

struct cfg_field {
    const char *key;
    enum cfg_kind kind;
    size_t offset;                /* into the module's struct */
    uint64_t min, max;            /* numbers; for strings max is the longest length */
    const struct cfg_field *fields; /* CFG_K_SECTION; NULL-key terminated */
    const char *const *words;     /* CFG_K_WORD; NULL terminated */
};

struct cfg_module {
    const char *key;   /* "cache" */
    bool per_route;    /* under routes[i] instead of the top level */
    size_t size;       /* of the struct the section fills */
    const struct cfg_field *fields;
    void (*defaults)(void *section); /* or NULL: zeroed */
    /* Checks across keys once the section is read: NULL, or a message; *key names the
     * offending key relative to the section (or NULL for the section itself). */
    const char *(*check)(void *section, const char **key);
    /* Frees what check derived (the loader frees the fields it read). Or NULL. */
    void (*release)(void *section);
};

/* Register before any load (not thread-safe). Returns the module's index for
 * cfg_module / cfg_route_module, or -ENOSPC. Registering the same key again returns the
 * index it has. */
int cfg_register_module(const struct cfg_module *m);
static inline const void *cfg_module(const struct cfg *cfg, int index)
{
    return index >= 0 ? cfg->modules[index] : NULL;
}
static inline const void *cfg_route_module(const struct cfg_route *r, int index)
{
    return index >= 0 ? r->modules[index] : NULL;
}

/* Load and validate path. On success returns a new config (free with cfg_free) and
 * leaves err untouched; on failure returns NULL and writes a one-line message of the
 * form "FILE:LINE:COLUMN: what is wrong" (or "FILE: ..." when there is no position)
 * into err[0, err_len). */
struct cfg *cfg_load(const char *path, char *err, size_t err_len);

/* The same, from a string in memory; name stands in for the file name in messages. */
struct cfg *cfg_load_string(const char *yaml, size_t len, const char *name, char *err,
                            size_t err_len);

void cfg_free(struct cfg *cfg);

/* Worker count for "workers: auto": the cgroup v2 CPU quota (cpu.max, rounded up, at
 * least 1), else the number of online CPUs. cgroup_root is normally "/sys/fs/cgroup". */
uint32_t cfg_auto_workers(const char *cgroup_root);

/* "250ms", "5s", "5m", "1h", "1.5s", "0" -> ms. Returns 0 on success, -1 on bad input. */
int cfg_parse_duration(const char *s, uint64_t *ms);
/* "512", "64KiB", "64MiB", "1GiB", "10kB", "10MB" -> bytes. 0 / -1 as above. */
int cfg_parse_size(const char *s, uint64_t *bytes);
/* Parse "host:port" into addr (as in struct cfg_addr). 0 / -1. On success addr owns
 * text and host (release with cfg_addr_free); on failure addr is left zeroed. */
int cfg_parse_addr(const char *s, struct cfg_addr *addr);
/* Frees what cfg_parse_addr allocated and zeroes addr; harmless on a zeroed addr. */
void cfg_addr_free(struct cfg_addr *addr);

#endif
