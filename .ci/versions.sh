#!/usr/bin/env bash
# The declared lower bounds of [dependencies] and the declared rust-version
# actually compile. Leaves the repository untouched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# --- lower bounds of [dependencies] (stable toolchain) ---------------------
# Resolve in a throwaway copy without [dev-dependencies] (users never resolve
# them) and without the optional integrations (`metrics`, `watch`, `redis`,
# `postgres`, `axum`: their crates' own old releases do not resolve
# together), so this checks the core and the default-on features; the
# repo's Cargo.toml and Cargo.lock are never touched. serde_json stays:
# `key-set` needs it.
echo "== minimal versions"
mv_dir=$(mktemp -d)
trap 'rm -rf "$mv_dir"' EXIT
tar --exclude=./target --exclude=./.git --exclude=./fuzz -cf - . | tar -xf - -C "$mv_dir"
awk '
  /^\[/ { skip = ($0 == "[dev-dependencies]" || $0 == "[[bench]]" || $0 == "[[example]]") }
  /^(metrics|notify|tokio|toml|tokio-postgres|axum|redis) = / { next }
  /^(metrics|watch|postgres|axum|redis) = \[/ { next }
  !skip' Cargo.toml > "$mv_dir/Cargo.toml"
for z in direct-minimal-versions minimal-versions; do
  echo "-- -Z $z"
  (cd "$mv_dir" && export CARGO_TARGET_DIR="$mv_dir/target" \
    && RUSTC_BOOTSTRAP=1 cargo update -Z "$z" --quiet \
    && cargo check --quiet --lib \
    && cargo check --quiet --lib --no-default-features)
done
echo "minimal versions: ok"

# --- MSRV: the lib on the declared rust-version -----------------------------
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
# Every feature but `watch`, `postgres` and `redis`: with today's releases, notify,
# tokio-postgres (through sha2 0.11) and redis 1.8 need Rust 1.88 (documented).
msrv_features="serde,key-set,generate-key,metrics"
echo "== msrv $msrv"
if ! install_log=$(timeout 300 rustup toolchain install "$msrv" --profile minimal --no-self-update 2>&1); then
  echo "skipped: rustup could not install Rust $msrv: $(printf '%s\n' "$install_log" | grep -m1 -i error || printf '%s\n' "$install_log" | tail -n1)"
else
  # The repo's lock, as is (--locked: fails rather than rewrite it).
  CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --quiet --locked --lib --features "$msrv_features"
  CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --quiet --locked --lib --no-default-features
  # The lowest versions the bounds allow, on the MSRV too (lock from above).
  (cd "$mv_dir" && CARGO_TARGET_DIR="$mv_dir/target-msrv" cargo "+$msrv" check --quiet --locked --lib)
  echo "msrv $msrv: ok"
fi
