{
  "targets": [
    {
      "target_name": "pegout_secp256k1",
      "sources": ["native/secp256k1_addon.c"],
      "cflags": ["-O3", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "defines": ["NAPI_VERSION=8"],
      "comment": "scripts/build-native.mjs prepares a copy of Debian's static libsecp256k1.a and passes it here",
      "libraries": ["<!(node -p \"process.env.PEGOUT_SECP256K1_LIB || ''\")"],
      "ldflags": ["-Wl,--exclude-libs,ALL"]
    }
  ]
}
