/* Fuzz target: the Redis value decoders on arbitrary bytes. They must never crash or
 * leak; what they accept must hold the entry's invariants and encode back to exactly the
 * same bytes, and what they refuse must come with a reason. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/codec.h"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_codec: %s\n", what);
        abort();
    }
}

static void check_refusal(int rc, const char *why)
{
    check(rc == -EINVAL || rc == -EPROTONOSUPPORT || rc == -ENOMEM, "unexpected error code");
    check(why != NULL && why[0] != '\0', "a refusal without a reason");
}

static void check_same(const char *a, size_t a_len, const char *b, size_t b_len)
{
    check(a_len == b_len && memcmp(a, b, a_len) == 0, "re-encoding differs from the input");
}

static void fuzz_entry(const char *data, size_t size, int kind)
{
    struct cache_entry *e = NULL;
    const char *why = NULL;
    int rc = cache_codec_decode(data, size, SIZE_MAX, &e, &why);
    if (rc != 0) {
        check(e == NULL, "a failed decode set *out");
        check_refusal(rc, why);
        return;
    }
    check(kind == CACHE_CODEC_ENTRY, "decoded what cache_codec_kind calls no entry");
    check(cache_codec_check(e) == NULL, "decoded an entry that fails the check");
    check(atomic_load(&e->refs) == 1, "a decoded entry has other than one reference");
    check(e->key[e->key_len] == '\0' && memchr(e->key, '\0', e->key_len) == NULL,
          "the key is not one NUL-terminated string");
    check(e->hash == cache_key_hash(e->key, e->key_len), "hash is not the key's");
    check(cache_codec_key_matches(e, e->key, e->key_len), "the key does not match itself");
    check((e->vary == NULL) == (e->variant == NULL), "vary without variant or the reverse");
    check(e->variant == NULL || e->variant[e->variant_len] == '\0', "variant not terminated");
    check(cache_codec_variant_matches(e, e->variant, e->variant_len),
          "the variant does not match itself");
    check(e->head != NULL && e->head->len > 0, "no head");
    check(e->body == NULL || e->body->len > 0, "an empty body slice");
    check(e->charge > 0, "cache_entry_finish was not called");
    /* The age arithmetic stays defined for any now of this era and far beyond. */
    (void)cache_entry_keep(e, (int64_t)1 << 40);

    char *again;
    size_t again_len;
    check(cache_codec_encode(e, &again, &again_len) == 0, "a decoded entry does not encode");
    check_same(again, again_len, data, size);
    free(again);

    size_t body_len = (size_t)cache_entry_body_len(e);
    if (body_len > 0) {
        struct cache_entry *small = NULL;
        rc = cache_codec_decode(data, size, body_len - 1, &small, &why);
        check(rc == -E2BIG && small == NULL, "max_body is not enforced");
    }
    cache_entry_unref(e);
}

static void fuzz_vary(const char *data, size_t size, int kind)
{
    struct cache_codec_vary v;
    const char *why = NULL;
    int rc = cache_codec_decode_vary(data, size, &v, &why);
    if (rc != 0) {
        check_refusal(rc, why);
        return;
    }
    check(kind == CACHE_CODEC_VARY, "decoded what cache_codec_kind calls no vary record");
    check(v.key >= data && v.key + v.key_len <= data + size && v.names >= data &&
              v.names + v.names_len <= data + size,
          "a vary record points outside its buffer");
    char *again;
    size_t again_len;
    check(cache_codec_encode_vary(v.key, v.key_len, v.names, v.names_len, v.generation, &again,
                                  &again_len) == 0,
          "a decoded vary record does not encode");
    check_same(again, again_len, data, size);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const char *why = NULL;
    int kind = cache_codec_kind(buf, size, &why);
    if (kind < 0)
        check_refusal(kind, why);
    fuzz_entry(buf, size, kind);
    fuzz_vary(buf, size, kind);

    /* Any bytes make a variant; the key's length does not depend on them. */
    char key[CACHE_CODEC_REDIS_KEY_MAX(2)];
    int n = cache_codec_redis_key("rs", size, size, buf, size, key, sizeof(key));
    check(n == (int)sizeof(key) - 1 && strlen(key) == (size_t)n, "bad variant key length");
    return 0;
}
