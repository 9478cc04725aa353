#include "proxy/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { THREAD_BUF = 64 * 1024, LINE_MAX_BYTES = 8 * 1024 };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running;
    bool stopping;
    char *backlog; /* bytes waiting for the writer */
    size_t backlog_len;
    size_t backlog_cap;
    size_t limit; /* bound on backlog_cap */
} writer = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static _Atomic int min_level = CFG_LOG_INFO;
static _Atomic uint64_t dropped;

/* Per-thread line buffer; workers flush it once per loop turn. */
static _Thread_local struct {
    char buf[THREAD_BUF];
    size_t len;
    bool batches;
} local;

static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* stdout is gone; nobody to tell */
        }
        p += n;
        len -= (size_t)n;
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    char *batch = NULL;
    size_t batch_cap = 0;
    pthread_mutex_lock(&writer.lock);
    for (;;) {
        while (writer.backlog_len == 0 && !writer.stopping)
            pthread_cond_wait(&writer.wake, &writer.lock);
        if (writer.backlog_len == 0 && writer.stopping)
            break;
        /* Swap buffers so producers are not held up by the write. */
        char *full = writer.backlog;
        size_t full_len = writer.backlog_len, full_cap = writer.backlog_cap;
        writer.backlog = batch;
        writer.backlog_cap = batch_cap;
        writer.backlog_len = 0;
        batch = full;
        batch_cap = full_cap;
        pthread_mutex_unlock(&writer.lock);
        write_all(batch, full_len);
        pthread_mutex_lock(&writer.lock);
    }
    pthread_mutex_unlock(&writer.lock);
    free(batch);
    return NULL;
}

int log_start(size_t backlog_bytes)
{
    pthread_mutex_lock(&writer.lock);
    writer.limit = backlog_bytes;
    writer.stopping = false;
    int rc = pthread_create(&writer.thread, NULL, writer_main, NULL);
    writer.running = rc == 0;
    pthread_mutex_unlock(&writer.lock);
    return -rc;
}

/* Hand bytes to the writer, or drop whole lines when the backlog is at its bound. The
 * two buffers the writer swaps grow on demand up to that bound. */
static void hand_over(const char *p, size_t len, size_t lines)
{
    pthread_mutex_lock(&writer.lock);
    if (!writer.running) {
        pthread_mutex_unlock(&writer.lock);
        write_all(p, len);
        return;
    }
    size_t need = writer.backlog_len + len;
    if (need > writer.backlog_cap) {
        size_t cap = writer.backlog_cap * 2 > need ? writer.backlog_cap * 2 : need;
        if (cap > writer.limit)
            cap = writer.limit;
        char *grown = need <= cap ? realloc(writer.backlog, cap) : NULL;
        if (grown == NULL) {
            pthread_mutex_unlock(&writer.lock);
            atomic_fetch_add(&dropped, lines);
            return;
        }
        writer.backlog = grown;
        writer.backlog_cap = cap;
    }
    memcpy(writer.backlog + writer.backlog_len, p, len);
    writer.backlog_len += len;
    pthread_cond_signal(&writer.wake);
    pthread_mutex_unlock(&writer.lock);
}

static size_t count_lines(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += p[i] == '\n';
    return n;
}

void log_flush_thread(void)
{
    if (local.len == 0)
        return;
    hand_over(local.buf, local.len, count_lines(local.buf, local.len));
    local.len = 0;
}

void log_thread_batches(void)
{
    local.batches = true;
}

void log_stop(void)
{
    log_flush_thread();
    pthread_mutex_lock(&writer.lock);
    if (!writer.running) {
        pthread_mutex_unlock(&writer.lock);
        return;
    }
    writer.stopping = true;
    pthread_cond_signal(&writer.wake);
    pthread_mutex_unlock(&writer.lock);
    pthread_join(writer.thread, NULL);
    pthread_mutex_lock(&writer.lock);
    writer.running = false;
    free(writer.backlog);
    writer.backlog = NULL;
    writer.backlog_len = writer.backlog_cap = 0;
    pthread_mutex_unlock(&writer.lock);
}

void log_set_level(enum cfg_log_level level)
{
    atomic_store(&min_level, (int)level);
}

uint64_t log_dropped(void)
{
    return atomic_load(&dropped);
}

static const char *level_name(enum cfg_log_level level)
{
    switch (level) {
    case CFG_LOG_DEBUG:
        return "debug";
    case CFG_LOG_INFO:
        return "info";
    case CFG_LOG_WARN:
        return "warn";
    case CFG_LOG_ERROR:
        return "error";
    }
    return "info";
}

void log_msg(enum cfg_log_level level, const char *msg, const char *fields_fmt, ...)
{
    if ((int)level < atomic_load(&min_level))
        return;
    char line[LINE_MAX_BYTES];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_name(level), msg);
    if (fields_fmt != NULL && n > 0 && (size_t)n < sizeof(line) - 1) {
        line[n++] = ',';
        va_list ap;
        va_start(ap, fields_fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fields_fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 3)
        n = (int)sizeof(line) - 3; /* truncated: still close the object */
    line[n++] = '}';
    line[n++] = '\n';

    if (!local.batches) {
        hand_over(line, (size_t)n, 1);
        return;
    }
    if (local.len + (size_t)n > sizeof(local.buf))
        log_flush_thread();
    memcpy(local.buf + local.len, line, (size_t)n);
    local.len += (size_t)n;
}

char *log_json_escape(const char *in, size_t len, char *out, size_t out_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        char esc[7];
        size_t elen;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20 || c >= 0x7f) {
            /* Bytes beyond ASCII are escaped too, so the line stays valid UTF-8. */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        } else {
            esc[0] = (char)c;
            elen = 1;
        }
        if (o + elen + 1 > out_len)
            break;
        memcpy(out + o, esc, elen);
        o += elen;
    }
    if (out_len > 0)
        out[o] = '\0';
    return out;
}
