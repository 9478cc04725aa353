/* JSON-lines logging on stdout.
 *
 * Workers never write to stdout themselves: a line is formatted into the calling
 * thread's buffer and handed, a batch at a time, to one writer thread, so a slow log
 * reader (a full pipe) delays only that thread. When the writer's backlog exceeds its
 * bound, lines are dropped and counted instead of growing memory. */
#ifndef RINGSIDE_LOG_H
#define RINGSIDE_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"

/* Start the writer thread. backlog_bytes bounds what may wait to be written.
 * Returns 0 or -errno. Before log_start (and after log_stop) lines go straight to stdout. */
int log_start(size_t backlog_bytes);
/* Write what is pending and stop the writer thread. */
void log_stop(void);
void log_set_level(enum cfg_log_level level);
/* Lines dropped because the backlog was full, since start. */
uint64_t log_dropped(void);

/* Log one line: {"ts":...,"level":...,"msg":msg, then the fields}. fields_fmt is a
 * printf format for the rest of the object without braces or a leading comma, e.g.
 * "\"worker\":%u,\"error\":\"%s\"", or NULL. String values must be JSON-safe: pass
 * untrusted text through log_json_escape first. */
void log_msg(enum cfg_log_level level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Hand this thread's buffered lines to the writer. Workers call it once per loop turn;
 * other threads' lines are handed over at once. */
void log_flush_thread(void);
/* Mark the calling thread as one that batches (a worker): its lines wait for
 * log_flush_thread. */
void log_thread_batches(void);

/* Escape in[0, len) into out as the inside of a JSON string (truncating to fit, always
 * NUL-terminated). Returns out. */
char *log_json_escape(const char *in, size_t len, char *out, size_t out_len);

#define log_debug(...) log_msg(CFG_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(CFG_LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(CFG_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(CFG_LOG_ERROR, __VA_ARGS__)

#endif
