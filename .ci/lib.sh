# Shared by .ci/run and scripts/demo: system dependencies and the prebuilt RocksDB.
# Source it from the repository root.

step() { printf '\n== %s\n' "$*"; }

# libclang for the rocksdb crate's bindgen; cargo-nextest for the test runner.
install_system_deps() {
  if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq libclang-dev >/dev/null
  fi
}

# RocksDB's C++ sources take ~30 minutes to compile on two cores, and cargo compiles them
# again for `check` (clippy) and for each profile. Compile them once, keep the static library
# beside the build outputs, and link every later build against it (librocksdb-sys honours
# ROCKSDB_LIB_DIR). Honours CARGO_TARGET_DIR.
use_prebuilt_rocksdb() {
  local target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
  local version
  version=$(grep -A1 '^name = "librocksdb-sys"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
  local prebuilt="$target_dir/rocksdb-prebuilt/$version"
  if [ ! -f "$prebuilt/librocksdb.a" ]; then
    step "compiling RocksDB once (slow on a fresh machine)"
    # Only the -sys crate: building the workspace here would produce a second copy of every
    # test binary, all rebuilt once ROCKSDB_LIB_DIR is set below, doubling the disk used.
    env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC cargo build -p librocksdb-sys --locked
    local built
    built=$(ls -t "$target_dir"/debug/build/librocksdb-sys-*/out/librocksdb.a | head -n 1)
    mkdir -p "$prebuilt"
    ln -f "$built" "$prebuilt/librocksdb.a.tmp" 2>/dev/null || cp "$built" "$prebuilt/librocksdb.a.tmp"
    mv "$prebuilt/librocksdb.a.tmp" "$prebuilt/librocksdb.a"
  fi
  export ROCKSDB_LIB_DIR="$prebuilt" ROCKSDB_STATIC=1
}

# Garage, the S3-compatible server the S3 tests start on loopback (testsupport/src/garage.rs).
# A `garage` on PATH or $RBK_GARAGE wins; otherwise it is built once from crates.io into
# <target dir>/tools/garage-<version> and reused by later runs. Only the LMDB metadata engine
# is compiled, at opt-level 1: about half the build time of a full release build, and still
# far faster than the tests need. Exports RBK_GARAGE.
GARAGE_VERSION=2.5.0
garage_root() { echo "${CARGO_TARGET_DIR:-$PWD/target}/tools/garage-$GARAGE_VERSION"; }

install_garage() {
  if [ -n "${RBK_GARAGE:-}" ]; then return 0; fi
  if command -v garage >/dev/null 2>&1; then export RBK_GARAGE; RBK_GARAGE=$(command -v garage); return 0; fi
  local root
  root=$(garage_root)
  if [ ! -x "$root/bin/garage" ]; then
    local build="${CARGO_TARGET_DIR:-$PWD/target}/tools/garage-build"
    cargo install garage --locked --version "$GARAGE_VERSION" \
      --no-default-features --features bundled-libs,lmdb \
      --config profile.release.opt-level=1 \
      --root "$root" --target-dir "$build" --quiet
    rm -rf "$build"
  fi
  export RBK_GARAGE="$root/bin/garage"
}

# Starts install_garage in the background (its build overlaps RocksDB's; both are long on a
# fresh machine); wait_for_garage waits for it and exports RBK_GARAGE.
start_garage_install() {
  GARAGE_LOG=$(mktemp)
  ( install_garage ) >"$GARAGE_LOG" 2>&1 &
  GARAGE_PID=$!
}

wait_for_garage() {
  if ! wait "$GARAGE_PID"; then
    cat "$GARAGE_LOG"
    echo "could not build Garage $GARAGE_VERSION: the S3 tests need it (see above)"
    return 1
  fi
  install_garage
  echo "garage: $RBK_GARAGE"
}

# run_fuzz SECONDS: builds the cargo-fuzz targets (installing cargo-fuzz if needed) and runs
# each for SECONDS on a scratch copy of its corpus. Returns non-zero only when a target
# finds a crash, whose input is then kept in fuzz/artifacts/.
run_fuzz() {
  local secs="$1"
  if [ "$secs" = 0 ]; then echo "skipped (RBK_FUZZ_SECONDS=0)"; return 0; fi
  if ! cargo fuzz --version >/dev/null 2>&1 && ! cargo install cargo-fuzz --locked; then
    echo "skipped: cargo-fuzz could not be installed"; return 0
  fi
  local target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" cargo fuzz build -O); then
    echo "skipped: this toolchain cannot build the fuzz targets"; return 0
  fi
  local scratch t
  scratch="$(mktemp -d)"
  for t in manifest_decode pack_parse store_config chunk_codec model; do
    cp -r "testdata/fuzz/$t" "$scratch/$t"
    (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
      cargo fuzz run -O "$t" "$scratch/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 \
      | grep -E "^(Done|==|SUMMARY|artifact_prefix|Test unit written)" ) || true
    if [ -n "$(ls -A fuzz/artifacts/"$t" 2>/dev/null)" ]; then
      echo "fuzz target $t found a crash: fuzz/artifacts/$t/"; rm -rf "$scratch"; return 1
    fi
  done
  rm -rf "$scratch"
}

