/*
 * The ceiling for our addon: libsecp256k1's own BIP340 sign and verify throughput on one
 * core, with no JavaScript in the loop. Built by bench/signing/run.ts against the same
 * static library the addon links. Usage: raw <items> <seconds>; prints one JSON line.
 */
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  int items = argc > 1 ? atoi(argv[1]) : 256;
  double seconds = argc > 2 ? atof(argv[2]) : 1.0;
  secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
  unsigned char sk[32], *msgs = malloc(32 * items), *sigs = malloc(64 * items), aux[32] = {0};
  secp256k1_keypair kp;
  secp256k1_xonly_pubkey pk;
  long signs = 0, verifies = 0;
  double start, sign_time, verify_time;

  for (int i = 0; i < 32; i++) sk[i] = (unsigned char)(i + 1);
  for (int i = 0; i < 32 * items; i++) msgs[i] = (unsigned char)(i * 7);
  if (!secp256k1_keypair_create(ctx, &kp, sk) || !secp256k1_keypair_xonly_pub(ctx, &pk, NULL, &kp)) return 1;

  start = now();
  do {
    for (int i = 0; i < items; i++) {
      if (!secp256k1_schnorrsig_sign32(ctx, sigs + 64 * i, msgs + 32 * i, &kp, aux)) return 2;
    }
    signs += items;
  } while ((sign_time = now() - start) < seconds);

  start = now();
  do {
    for (int i = 0; i < items; i++) {
      if (!secp256k1_schnorrsig_verify(ctx, sigs + 64 * i, msgs + 32 * i, 32, &pk)) return 3;
    }
    verifies += items;
  } while ((verify_time = now() - start) < seconds);

  printf("{\"signPerSec\": %.1f, \"verifyPerSec\": %.1f}\n", signs / sign_time, verifies / verify_time);
  secp256k1_context_destroy(ctx);
  free(msgs);
  free(sigs);
  return 0;
}
