/*
 * BIP340 Schnorr over libsecp256k1, for Node through N-API.
 *
 * Entry points take and return contiguous buffers so that one crossing of the JS/C boundary
 * handles a whole batch. Every argument is checked here, before libsecp256k1 sees it: a
 * wrong type, a wrong length, a detached buffer or an invalid secret key becomes a JS Error
 * with a stable `code`, never undefined behaviour or an abort.
 */
#include <node_api.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/*
 * Debian's libsecp256k1.a is position-independent except for its default callbacks' use of
 * `stderr`, which a shared object cannot reach PC-relatively. scripts/build-native.mjs
 * renames that reference to this variable in a build-local copy of the archive, and init
 * points it at the real stderr. Our illegal-argument callback replaces the library's; its error
 * callback (an internal inconsistency: memory corruption, a hardware fault) stays the library's,
 * which prints to that stderr and aborts, since after it returns anything may happen.
 */
__attribute__((visibility("hidden"))) FILE *pegout_libsecp256k1_stderr;

typedef struct {
  secp256k1_context *ctx;
  int illegal; /* set by the illegal-argument callback instead of aborting */
} addon_state;

/* A zeroing that the compiler may not drop: secret keys and keypairs must not linger. */
static void cleanse(void *p, size_t n) {
  volatile unsigned char *v = (volatile unsigned char *)p;
  while (n--) *v++ = 0;
}

static void on_illegal(const char *message, void *data) {
  (void)message;
  ((addon_state *)data)->illegal = 1;
}

#define THROW(env, code, ...)                                  \
  do {                                                         \
    char msg_[256];                                            \
    snprintf(msg_, sizeof msg_, __VA_ARGS__);                  \
    napi_throw_error((env), (code), msg_);                     \
    return NULL;                                               \
  } while (0)

#define NAPI_OK(env, call)                                                     \
  do {                                                                         \
    if ((call) != napi_ok) THROW((env), "ERR_NAPI", "N-API call failed: %s", #call); \
  } while (0)

typedef struct {
  unsigned char *data;
  size_t length;
} bytes_arg;

/*
 * Reads argument `index` as a Uint8Array (Buffer included). Returns 0 after throwing when it
 * is not one, when its buffer is detached or shared (a SharedArrayBuffer: another thread may
 * write it while libsecp256k1 reads it, and a message changed between the nonce and the
 * challenge gives a valid signature that, beside another, reveals the key), or when `unit` > 0
 * and its length is not a positive multiple of `unit` (exactly `unit` when `exact`).
 */
static int get_bytes(napi_env env, napi_value value, const char *name, size_t unit, int exact, bytes_arg *out) {
  bool is_typed = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  napi_value arraybuffer;
  size_t offset = 0;
  bool detached = false;
  bool unshared = false;
  char msg[200];

  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) {
    snprintf(msg, sizeof msg, "%s must be a Uint8Array or Buffer", name);
    napi_throw_type_error(env, "ERR_ARG_TYPE", msg);
    return 0;
  }
  if (napi_get_typedarray_info(env, value, &type, &length, &data, &arraybuffer, &offset) != napi_ok || type != napi_uint8_array) {
    snprintf(msg, sizeof msg, "%s must be a Uint8Array or Buffer (got another typed array)", name);
    napi_throw_type_error(env, "ERR_ARG_TYPE", msg);
    return 0;
  }
  /* napi_is_arraybuffer is false for a SharedArrayBuffer */
  if (napi_is_arraybuffer(env, arraybuffer, &unshared) != napi_ok || !unshared) {
    snprintf(msg, sizeof msg, "%s is backed by a SharedArrayBuffer, which another thread can change while it is read; pass a copy", name);
    napi_throw_error(env, "ERR_SHARED", msg);
    return 0;
  }
  if (napi_is_detached_arraybuffer(env, arraybuffer, &detached) != napi_ok || detached) {
    snprintf(msg, sizeof msg, "%s is backed by a detached ArrayBuffer (it was transferred); pass a live buffer", name);
    napi_throw_error(env, "ERR_DETACHED", msg);
    return 0;
  }
  if (unit > 0) {
    int ok = exact ? length == unit : (length > 0 && length % unit == 0);
    if (!ok) {
      if (exact)
        snprintf(msg, sizeof msg, "%s must be exactly %zu bytes, got %zu", name, unit, length);
      else
        snprintf(msg, sizeof msg, "%s must be a non-empty multiple of %zu bytes, got %zu", name, unit, length);
      napi_throw_range_error(env, "ERR_BUFFER_LENGTH", msg);
      return 0;
    }
  }
  out->data = (unsigned char *)data;
  out->length = length;
  return 1;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, addon_state **state, const char *usage) {
  size_t argc = want;
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) {
    napi_throw_error(env, "ERR_NAPI", "could not read call arguments");
    return 0;
  }
  if (argc < want) {
    char msg[200];
    snprintf(msg, sizeof msg, "expected %zu arguments: %s; got %zu", want, usage, argc);
    napi_throw_type_error(env, "ERR_ARG_COUNT", msg);
    return 0;
  }
  *state = (addon_state *)data;
  return 1;
}

/* Builds a keypair from a 32-byte secret key, or throws ERR_SECRET_KEY. */
static int load_keypair(napi_env env, addon_state *st, const unsigned char *secret, secp256k1_keypair *keypair) {
  if (!secp256k1_keypair_create(st->ctx, keypair, secret)) {
    cleanse(keypair, sizeof *keypair);
    napi_throw_range_error(env, "ERR_SECRET_KEY", "secretKey is not a valid secp256k1 secret key (it must be in [1, n-1], n the curve order)");
    return 0;
  }
  return 1;
}

/* xonlyPublicKey(secretKey: 32 bytes) -> 32-byte x-only public key */
static napi_value xonly_public_key(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  addon_state *st;
  bytes_arg sk;
  secp256k1_keypair keypair;
  secp256k1_xonly_pubkey xonly;
  void *out;

  if (!get_args(env, info, 1, argv, &st, "secretKey") || !get_bytes(env, argv[0], "secretKey", 32, 1, &sk)) return NULL;
  /* the result first: a failure after the keypair is loaded would leave it on the stack uncleared */
  NAPI_OK(env, napi_create_buffer(env, 32, &out, &result));
  if (!load_keypair(env, st, sk.data, &keypair)) return NULL;
  int ok = secp256k1_keypair_xonly_pub(st->ctx, &xonly, NULL, &keypair) && secp256k1_xonly_pubkey_serialize(st->ctx, out, &xonly);
  cleanse(&keypair, sizeof keypair);
  if (!ok) THROW(env, "ERR_SECRET_KEY", "libsecp256k1 could not derive the public key");
  return result;
}

/* signBatch(secretKey: 32, messages: N*32, aux: N*32 | null) -> N*64 signatures */
static napi_value sign_batch(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  addon_state *st;
  bytes_arg sk, msgs, aux = {NULL, 0};
  napi_valuetype aux_type;
  secp256k1_keypair keypair;
  unsigned char *out;
  size_t n, i;

  if (!get_args(env, info, 3, argv, &st, "secretKey, messages, aux (or null)")) return NULL;
  if (!get_bytes(env, argv[0], "secretKey", 32, 1, &sk) || !get_bytes(env, argv[1], "messages", 32, 0, &msgs)) return NULL;
  n = msgs.length / 32;
  NAPI_OK(env, napi_typeof(env, argv[2], &aux_type));
  if (aux_type != napi_null) {
    if (!get_bytes(env, argv[2], "aux", 32, 0, &aux)) return NULL;
    if (aux.length != msgs.length) THROW(env, "ERR_BUFFER_LENGTH", "aux must hold 32 bytes per message: %zu messages need %zu bytes, got %zu", n, n * 32, aux.length);
  }
  if (!load_keypair(env, st, sk.data, &keypair)) return NULL;
  if (napi_create_buffer(env, n * 64, (void **)&out, &result) != napi_ok) {
    cleanse(&keypair, sizeof keypair);
    THROW(env, "ERR_NAPI", "could not allocate %zu bytes for signatures", n * 64);
  }
  st->illegal = 0;
  for (i = 0; i < n; i++) {
    if (!secp256k1_schnorrsig_sign32(st->ctx, out + 64 * i, msgs.data + 32 * i, &keypair, aux.data ? aux.data + 32 * i : NULL)) {
      cleanse(&keypair, sizeof keypair);
      THROW(env, "ERR_SIGN", "libsecp256k1 failed to sign message %zu", i);
    }
  }
  cleanse(&keypair, sizeof keypair);
  if (st->illegal) THROW(env, "ERR_SIGN", "libsecp256k1 reported an illegal argument while signing");
  return result;
}

/* A key that is not on the curve is a failed verification, as BIP340 says, not an error. */
static int verify_one(addon_state *st, const unsigned char *sig64, const unsigned char *msg, size_t msglen, const unsigned char *key32) {
  secp256k1_xonly_pubkey xonly;
  return secp256k1_xonly_pubkey_parse(st->ctx, &xonly, key32) && secp256k1_schnorrsig_verify(st->ctx, sig64, msglen ? msg : NULL, msglen, &xonly);
}

/*
 * A batch is one member's signatures over one transaction, so every item usually carries the same
 * key: it is parsed (a square root) when its bytes differ from the item before's, not for each item.
 * NULL for a key that is not on the curve, as verify_one fails it.
 */
typedef struct {
  unsigned char bytes[32];
  secp256k1_xonly_pubkey xonly;
  int have, parsed;
} key_cache;

static const secp256k1_xonly_pubkey *cached_key(addon_state *st, key_cache *cache, const unsigned char *key32) {
  if (!cache->have || memcmp(cache->bytes, key32, 32) != 0) {
    memcpy(cache->bytes, key32, 32);
    /* parsed from the copy: the key the cache says it holds is the key it parsed */
    cache->parsed = secp256k1_xonly_pubkey_parse(st->ctx, &cache->xonly, cache->bytes);
    cache->have = 1;
  }
  return cache->parsed ? &cache->xonly : NULL;
}

/* verifyBatch(signatures: N*64, messages: N*32, pubkeys: N*32) -> N bytes, 1 valid / 0 invalid */
static napi_value verify_batch(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  addon_state *st;
  bytes_arg sigs, msgs, keys;
  unsigned char *out;
  size_t n, i;
  key_cache cache = {{0}, {{0}}, 0, 0};

  if (!get_args(env, info, 3, argv, &st, "signatures, messages, pubkeys")) return NULL;
  if (!get_bytes(env, argv[0], "signatures", 64, 0, &sigs) || !get_bytes(env, argv[1], "messages", 32, 0, &msgs) || !get_bytes(env, argv[2], "pubkeys", 32, 0, &keys)) return NULL;
  n = msgs.length / 32;
  if (sigs.length / 64 != n || keys.length / 32 != n)
    THROW(env, "ERR_BUFFER_LENGTH", "batch sizes differ: %zu signatures, %zu messages, %zu pubkeys", sigs.length / 64, n, keys.length / 32);
  NAPI_OK(env, napi_create_buffer(env, n, (void **)&out, &result));
  for (i = 0; i < n; i++) {
    const secp256k1_xonly_pubkey *key = cached_key(st, &cache, keys.data + 32 * i);
    out[i] = key != NULL && secp256k1_schnorrsig_verify(st->ctx, sigs.data + 64 * i, msgs.data + 32 * i, 32, key);
  }
  return result;
}

/*
 * sign(secretKey: 32, message: any length, aux: 32 | null) -> 64-byte signature.
 * BIP340 signs messages of any length (its vectors include 0, 1, 17 and 100 bytes); the batch
 * entry point above keeps the 32-byte fast path for sighashes.
 */
static napi_value sign_message(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  addon_state *st;
  bytes_arg sk, msg, aux = {NULL, 0};
  napi_valuetype aux_type;
  secp256k1_keypair keypair;
  secp256k1_schnorrsig_extraparams extra = SECP256K1_SCHNORRSIG_EXTRAPARAMS_INIT;
  unsigned char *out;

  if (!get_args(env, info, 3, argv, &st, "secretKey, message, aux (or null)")) return NULL;
  if (!get_bytes(env, argv[0], "secretKey", 32, 1, &sk) || !get_bytes(env, argv[1], "message", 0, 0, &msg)) return NULL;
  NAPI_OK(env, napi_typeof(env, argv[2], &aux_type));
  if (aux_type != napi_null && !get_bytes(env, argv[2], "aux", 32, 1, &aux)) return NULL;
  extra.ndata = aux.data; /* NULL means BIP340's all-zero aux, as in signBatch */
  if (!load_keypair(env, st, sk.data, &keypair)) return NULL;
  if (napi_create_buffer(env, 64, (void **)&out, &result) != napi_ok) {
    cleanse(&keypair, sizeof keypair);
    THROW(env, "ERR_NAPI", "could not allocate 64 bytes for a signature");
  }
  st->illegal = 0;
  int ok = secp256k1_schnorrsig_sign_custom(st->ctx, out, msg.length ? msg.data : NULL, msg.length, &keypair, &extra);
  cleanse(&keypair, sizeof keypair);
  if (!ok || st->illegal) THROW(env, "ERR_SIGN", "libsecp256k1 failed to sign a %zu-byte message", msg.length);
  return result;
}

/* verify(signature: 64, message: any length, pubkey: 32) -> boolean */
static napi_value verify_message(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  addon_state *st;
  bytes_arg sig, msg, key;

  if (!get_args(env, info, 3, argv, &st, "signature, message, pubkey")) return NULL;
  if (!get_bytes(env, argv[0], "signature", 64, 1, &sig) || !get_bytes(env, argv[1], "message", 0, 0, &msg) ||
      !get_bytes(env, argv[2], "pubkey", 32, 1, &key))
    return NULL;
  NAPI_OK(env, napi_get_boolean(env, verify_one(st, sig.data, msg.data, msg.length, key.data), &result));
  return result;
}

/* taggedHash(tag: Uint8Array, data: Uint8Array) -> 32 bytes */
static napi_value tagged_hash(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  addon_state *st;
  bytes_arg tag, data;
  void *out;

  if (!get_args(env, info, 2, argv, &st, "tag, data")) return NULL;
  if (!get_bytes(env, argv[0], "tag", 0, 0, &tag) || !get_bytes(env, argv[1], "data", 0, 0, &data)) return NULL;
  NAPI_OK(env, napi_create_buffer(env, 32, &out, &result));
  /* libsecp256k1 wants non-NULL pointers even for empty input. */
  static const unsigned char empty[1] = {0};
  if (!secp256k1_tagged_sha256(st->ctx, out, tag.length ? tag.data : empty, tag.length, data.length ? data.data : empty, data.length))
    THROW(env, "ERR_HASH", "libsecp256k1 refused to hash");
  return result;
}

/*
 * The calling thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID), as a double (exact up
 * to 104 days). Not secp256k1, but this is the project's one addon: Node 20 has no per-thread CPU
 * clock (process.threadCpuUsage came in 23.9), and the stage counters (src/metrics/stages.ts)
 * need one that a crowded machine's run queue does not inflate, on the main thread and in workers.
 */
static napi_value thread_cpu_ns(napi_env env, napi_callback_info info) {
  struct timespec ts;
  napi_value result;
  (void)info;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) THROW(env, "ERR_CLOCK", "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
  NAPI_OK(env, napi_create_double(env, (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec, &result));
  return result;
}

static void destroy_state(napi_env env, void *data, void *hint) {
  addon_state *st = (addon_state *)data;
  (void)env;
  (void)hint;
  if (st->ctx) secp256k1_context_destroy(st->ctx);
  free(st);
}

NAPI_MODULE_INIT() {
  unsigned char seed[32];
  napi_value fn;
  pegout_libsecp256k1_stderr = stderr;
  addon_state *st = calloc(1, sizeof *st);
  if (!st) THROW(env, "ERR_INIT", "out of memory");
  st->ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
  if (!st->ctx) {
    free(st);
    THROW(env, "ERR_INIT", "secp256k1_context_create failed");
  }
  secp256k1_context_set_illegal_callback(st->ctx, on_illegal, st);
  /* Randomizing the context blinds signing against side channels. */
  if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed || !secp256k1_context_randomize(st->ctx, seed)) {
    secp256k1_context_destroy(st->ctx);
    free(st);
    THROW(env, "ERR_INIT", "could not randomize the secp256k1 context (no OS randomness?)");
  }
  cleanse(seed, sizeof seed);
  if (napi_set_instance_data(env, st, destroy_state, NULL) != napi_ok) {
    secp256k1_context_destroy(st->ctx);
    free(st);
    THROW(env, "ERR_INIT", "napi_set_instance_data failed");
  }

  static const struct { const char *name; napi_callback cb; } fns[] = {
    {"xonlyPublicKey", xonly_public_key},
    {"signBatch", sign_batch},
    {"verifyBatch", verify_batch},
    {"sign", sign_message},
    {"verify", verify_message},
    {"taggedHash", tagged_hash},
    {"threadCpuNs", thread_cpu_ns},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    NAPI_OK(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, st, &fn));
    NAPI_OK(env, napi_set_named_property(env, exports, fns[i].name, fn));
  }
  return exports;
}
