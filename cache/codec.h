/* The bytes of a cache entry in Redis, and the keys they live under.
 *
 * Several pods share one Redis and, during a rolling update, may run different ringside
 * versions. Every value therefore starts with a magic and a format version; a reader
 * that finds another version treats the value as a miss and overwrites it with its own
 * when it stores the response again. The version is not part of the key, so a purge
 * reaches what every version wrote. Any change to the layout or to the meaning of a
 * field, a new flag included, takes a new version.
 *
 * Layout (integers little-endian, fixed width):
 *
 *   value  = magic "RSCE" | u16 version (1) | u8 kind | entry or vary record
 *   entry  = u16 status | u32 flags | i64 response_time initial_age lifetime
 *            stale_while_revalidate stale_if_error last_modified |
 *            string key vary variant tags etag | u32 head length, head | u32 body length, body
 *   vary   = u64 generation | string key | string names
 *   string = u32 length (0xffffffff: absent), bytes
 *
 * Each value has exactly one encoding: whatever decodes re-encodes to the same bytes.
 * Nothing follows the last field.
 *
 * Keys, with <h> the 16 lowercase hex digits of cache_key_hash(primary key):
 *
 *   <ns>:e:<h>        the base slot: the entry when the response has no Vary, otherwise
 *                     a vary record (the key, the Vary names, a generation)
 *   <ns>:e:<h>:<v>    one variant: <v> is XXH3-64 of the request's variant (see
 *                     cache_variant) seeded with the record's generation
 *
 * Lookup: GET the base slot. Nothing there is a miss; an entry is the answer (one round
 * trip); a vary record (cache_codec_kind) gives the names from which the reader computes
 * the request's variant and GETs that variant's slot (two round trips). Every value is
 * checked against the key looked up (cache_codec_key_matches, and for a variant also
 * cache_codec_variant_matches), since keys are hashes and hashes collide.
 *
 * Store, pipelined in one round trip: without Vary, SET the base slot to the entry; with
 * Vary, SET the base slot to a vary record and the variant's slot to the entry, with EX
 * cache_entry_keep(e, now) for the entry and at least as long for the record. A reader
 * that finds the record but not yet the variant misses, which is harmless.
 *
 * Generations make "DEL the base slot" a purge of every variant of a key: a writer
 * reuses the generation of the record its own lookup read when the Vary names are the
 * same, and otherwise starts a new one (cache_codec_new_generation), so variants stored
 * before a purge are never read again and expire by their TTL. A writer that read no
 * record (a refresh of an entry held in memory, say) reads the base slot first or starts
 * a new generation; the latter costs the other variants their Redis copies, never
 * correctness. A response that stops or starts varying simply replaces the base slot. */
#ifndef RINGSIDE_CACHE_CODEC_H
#define RINGSIDE_CACHE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/entry.h"

#define CACHE_CODEC_VERSION 1u

/* Times (response_time, initial_age, stale windows, last_modified) lie in
 * [0, CACHE_CODEC_MAX_SECONDS], last_modified may also be -1 and lifetime may be
 * negative down to -CACHE_CODEC_MAX_SECONDS: far beyond any real date or delta, small
 * enough that the age arithmetic of entry.h cannot overflow. */
#define CACHE_CODEC_MAX_SECONDS (INT64_C(1) << 40)

/* Why e cannot be encoded, or NULL when it can. The decoder accepts exactly the values
 * whose entries pass this check:
 *   - key present, no NUL in it or in the variant; vary, tags and etag are field-value
 *     bytes (HTAB, SP, VCHAR, obs-text); a variant exactly when there is a vary;
 *   - status 100..599, only known flags, times as for CACHE_CODEC_MAX_SECONDS;
 *   - head "HTTP/1.1 NNN[ reason]" CRLF, then field lines "name:value" CRLF, no empty
 *     line; NNN is status; Content-Length, if present, once and equal to the body length;
 *     no Transfer-Encoding or Age (a hit adds its own). */
const char *cache_codec_check(const struct cache_entry *e);

/* Encode e into one malloc'd buffer (*out, *len) that the caller frees; an empty body
 * slice is encoded as no body. Returns 0, -EINVAL when cache_codec_check refuses e, or
 * -ENOMEM. */
int cache_codec_encode(const struct cache_entry *e, char **out, size_t *len);

enum cache_codec_kind {
    CACHE_CODEC_ENTRY = 1,
    CACHE_CODEC_VARY = 2,
};

/* What the value buf[0, len) holds, from its first bytes only: CACHE_CODEC_ENTRY,
 * CACHE_CODEC_VARY, -EINVAL (not a value of ours, *why set) or -EPROTONOSUPPORT
 * (another format version: a miss). why may be NULL. */
int cache_codec_kind(const char *buf, size_t len, const char **why);

/* Decode the entry in buf[0, len) into *out: a new entry with one reference for the
 * caller, key and hash set, head and body in slices of their own (buf can go right
 * after), cache_entry_finish called. Everything is validated before anything is
 * allocated. Returns 0; -EINVAL when malformed (a vary record included); -E2BIG when
 * the body is over max_body; -EPROTONOSUPPORT for another format version; -ENOMEM. On
 * failure *out is untouched and *why (unless why is NULL) says why in a few words, a
 * static string. */
int cache_codec_decode(const char *buf, size_t len, size_t max_body, struct cache_entry **out,
                       const char **why);

/* True when e was stored for this primary key. */
bool cache_codec_key_matches(const struct cache_entry *e, const char *key, size_t key_len);
/* True when e was stored for this variant; variant NULL means "no Vary". */
bool cache_codec_variant_matches(const struct cache_entry *e, const char *variant,
                                 size_t variant_len);

/* A decoded vary record. key and names point into the decoded buffer and are not
 * NUL-terminated; names are the entry's vary (lowercase names joined by ", "). */
struct cache_codec_vary {
    uint64_t generation;
    const char *key;
    size_t key_len;
    const char *names;
    size_t names_len;
};

/* Encode the vary record of primary key key[0, key_len) with the Vary names
 * names[0, names_len) (an entry's key and vary) into one malloc'd buffer the caller
 * frees. Returns 0, -EINVAL (NUL in the key, names not field-value bytes, a length over
 * UINT32_MAX - 1) or -ENOMEM. */
int cache_codec_encode_vary(const char *key, size_t key_len, const char *names,
                            size_t names_len, uint64_t generation, char **out, size_t *len);

/* Decode the vary record in buf[0, len) into *out, pointing into buf. Returns 0,
 * -EINVAL (malformed, an entry included; *why set), or -EPROTONOSUPPORT. The caller
 * compares out->key with the key it looked up. */
int cache_codec_decode_vary(const char *buf, size_t len, struct cache_codec_vary *out,
                            const char **why);

/* A fresh random generation for a new vary record. */
uint64_t cache_codec_new_generation(void);

/* Bytes cache_codec_redis_key may need, NUL included, for a namespace of ns_len bytes. */
#define CACHE_CODEC_REDIS_KEY_MAX(ns_len) ((ns_len) + sizeof(":e:") - 1 + 16 + 1 + 16 + 1)

/* Write the Redis key of a slot into out[0, cap), NUL-terminated: the base slot of
 * key_hash when variant is NULL (generation ignored), else the slot of that variant
 * under the record's generation. Returns the length without the NUL, or -1 when cap is
 * too small. */
int cache_codec_redis_key(const char *ns, uint64_t key_hash, uint64_t generation,
                          const char *variant, size_t variant_len, char *out, size_t cap);

#endif
