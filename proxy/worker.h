/* Workers: one thread, one loop, one SO_REUSEPORT listener each. Shared-nothing but
 * for struct runtime. */
#ifndef RINGSIDE_WORKER_H
#define RINGSIDE_WORKER_H

#include <stddef.h>

struct runtime;
struct worker;

/* Bind worker index's listener (so a bad address fails the start, not a thread) and
 * start its thread. 0, or -1 with a message in err. */
int worker_start(struct runtime *rt, unsigned index, struct worker **out, char *err,
                 size_t err_len);
/* Tell the worker to look at the runtime again (drain started). Any thread. */
void worker_wake(struct worker *w);
/* Wait for the worker's thread to finish (after a drain). */
void worker_join(struct worker *w);
/* Free it once every worker has been joined (others may post to it until then). */
void worker_free(struct worker *w);
/* Run fn(ws, arg) on w's thread (any thread may call); see hw_post. */
int worker_post(struct worker *w, void (*fn)(void *ws, void *arg), void *arg);

#endif
