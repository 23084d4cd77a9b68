# Shared by .ci/run and scripts/demo: system dependencies and the prebuilt RocksDB.
# Source it from the repository root.

step() { printf '\n== %s\n' "$*"; }

# libclang for the rocksdb crate's bindgen. bindgen (through clang-sys) loads the C library
# libclang: libclang.so, libclang-<N>.so or a suffix-versioned libclang.so.<N> /
# libclang-<N>.so.<N>, from $LIBCLANG_PATH, `llvm-config --libdir` or the usual library dirs.
# libclang-cpp.so.* (the C++ interface, shipped on images without libclang) does not count:
# clang-sys skips it, and a check that matched it once let a fresh machine fail mid-build.
libclang_dirs() {
  if [ -n "${LIBCLANG_PATH:-}" ]; then echo "$LIBCLANG_PATH"; return; fi
  command -v llvm-config >/dev/null 2>&1 && llvm-config --libdir 2>/dev/null
  local d
  for d in /usr/lib/llvm-*/lib /usr/local/llvm*/lib /usr/lib /usr/lib64 /usr/local/lib \
    /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib/*/lib; do
    [ -d "$d" ] && echo "$d"
  done
}

# Prints the first libclang that bindgen would load, or nothing. A candidate must be a file
# (symlinks followed) that exports libclang's C entry point.
find_libclang() {
  local dir f
  while IFS= read -r dir; do
    for f in "$dir"/libclang.so "$dir"/libclang-*.so "$dir"/libclang.so.* "$dir"/libclang-*.so.*; do
      case "$(basename "$f")" in libclang-cpp*) continue ;; esac
      [ -f "$f" ] || continue
      if grep -q clang_createIndex "$f" 2>/dev/null; then echo "$f"; return 0; fi
    done
  done < <(libclang_dirs)
  return 1
}

# cannot_install WHAT WHY PACKAGES: stops with what to install by hand, before anything is
# compiled.
cannot_install() {
  echo "error: $1 is missing and cannot be installed here ($2)." >&2
  echo "Install it as root (on Debian/Ubuntu: apt-get install -y $3), then run this again." >&2
  case "$1" in *libclang*)
    echo "A libclang elsewhere works too: point LIBCLANG_PATH at the directory holding libclang.so." >&2 ;;
  esac
  exit 1
}

# have TOOL: TOOL is an executable on PATH. (`command -v` alone also reports a file that is
# on PATH but not executable.)
have() {
  local p
  p=$(command -v "$1" 2>/dev/null) && [ -f "$p" ] && [ -x "$p" ]
}

# apt_install WHAT PACKAGE...: apt-get install as root (directly, or through sudo when that
# works without a password prompt).
apt_install() {
  local what="$1"; shift
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then sudo="sudo -n"
    else cannot_install "$what" "not root, and no password-less sudo" "$*"; fi
  fi
  have apt-get || cannot_install "$what" "no apt-get on this machine" "$*"
  echo "installing $* with apt-get"
  $sudo apt-get update -qq || { echo "error: apt-get update failed (see above)" >&2; exit 1; }
  $sudo apt-get install -y -qq "$@" >/dev/null \
    || { echo "error: apt-get install $* failed (see above)" >&2; exit 1; }
}

# What the build needs beyond the Rust toolchain: libclang (bindgen, for the rocksdb crate)
# and a C++ compiler (RocksDB's sources; the C ones of zstd, lz4 and LMDB need cc, which
# rustc's linker already is); and, when run as root, setpriv (a test restores as another
# user).
install_system_deps() {
  local lib missing=() what=()
  if lib=$(find_libclang); then echo "libclang: $lib"
  else missing+=(libclang-dev); what+=(libclang); fi
  if have c++; then echo "c++: $(command -v c++)"
  else missing+=(g++); what+=("a C++ compiler"); fi
  # Run as root, a test restores as another user through setpriv (util-linux).
  if [ "$(id -u)" != 0 ] || have setpriv; then :
  else missing+=(util-linux); what+=(setpriv); fi
  [ ${#missing[@]} -eq 0 ] && return 0
  local IFS=" "
  apt_install "$(printf '%s and ' "${what[@]}" | sed 's/ and $//')" "${missing[@]}"
  if [[ " ${missing[*]} " == *" libclang-dev "* ]]; then
    lib=$(find_libclang) || {
      echo "error: libclang-dev was installed but no libclang.so is where bindgen looks." >&2
      echo "Set LIBCLANG_PATH to the directory that holds libclang.so and run this again." >&2
      exit 1
    }
    echo "libclang: $lib (installed)"
  fi
  have c++ || { echo "error: g++ was installed but there is no c++" >&2; exit 1; }
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
  for t in manifest_decode pack_parse store_config chunk_codec model data_dir_scan; do
    cp -r "testdata/fuzz/$t" "$scratch/$t"
    (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
      cargo fuzz run -O "$t" "$scratch/$t" -- -max_total_time="$secs" -timeout=60 -rss_limit_mb=4096 2>&1 \
      | grep -E "^(Done|==|SUMMARY|artifact_prefix|Test unit written)" ) || true
    if [ -n "$(ls -A fuzz/artifacts/"$t" 2>/dev/null)" ]; then
      echo "fuzz target $t found a crash: fuzz/artifacts/$t/"; rm -rf "$scratch"; return 1
    fi
  done
  rm -rf "$scratch"
}

