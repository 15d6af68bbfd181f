#!/usr/bin/env bash
# What static composition costs: the release `fibcache` binary built with each feature set,
# and each example plugin (a `cdylib` carrying its own copy of std, tokio and its client
# library), as a markdown table of bytes and MiB, as built and stripped.
#
#   scripts/sizes.sh    # prints the table, also written to target/fibcache-sizes/sizes.md
#
# The release profile keeps line tables (`debug = "line-tables-only"`) for backtraces and
# profiles, so "as built" includes them; "stripped" is what `strip` leaves, the size that
# matters when shipping. Each build is copied to target/fibcache-sizes/ before the next one
# overwrites target/release/fibcache.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="$target_dir/fibcache-sizes"
rm -rf "$out"
mkdir -p "$out"
rows=()

# name label cargo-args... : builds, copies the artifact to $out/name and records a row.
measure() {
    local name=$1 label=$2 artifact=$3
    shift 3
    echo "sizes.sh: cargo build --release $*" >&2
    cargo build --release --quiet "$@"
    cp "$artifact" "$out/$name"
    strip -o "$out/$name.stripped" "$out/$name"
    rows+=("$name|$label|$(stat -c %s "$out/$name")|$(stat -c %s "$out/$name.stripped")")
}

bin="$target_dir/release/fibcache"
measure fibcache-nop '`fibcache`, `--no-default-features` (`nop` only)' "$bin" \
    --bin fibcache --no-default-features
measure fibcache-default '`fibcache`, default features (`memory`)' "$bin" --bin fibcache
measure fibcache-redis '`fibcache`, `--features redis`' "$bin" --bin fibcache --features redis
measure fibcache-dynamic '`fibcache`, `--features dynamic`' "$bin" --bin fibcache \
    --features dynamic
measure fibcache-all '`fibcache`, `--features redis,dynamic`' "$bin" --bin fibcache \
    --features redis,dynamic

# Every example that is a cdylib plugin (the test fixtures excluded), with its features.
dll_prefix=lib dll_suffix=.so
[ "$(uname)" = Darwin ] && dll_suffix=.dylib
while IFS='|' read -r example features; do
    measure "$example" "plugin \`$example\` (\`--features $features\`)" \
        "$target_dir/release/examples/$dll_prefix$example$dll_suffix" \
        --example "$example" --features "$features"
done < <(awk '
    /^\[\[example\]\]/ { flush(); inex = 1; next }
    /^\[/ { flush(); inex = 0; next }
    inex && /^name *=/ { gsub(/.*= *"|".*/, ""); name = $0 }
    inex && /^crate-type *=/ && /cdylib/ { cdylib = 1 }
    inex && /^required-features *=/ { gsub(/.*= *\[|\].*|"| /, ""); feats = $0 }
    function flush() {
        if (name != "" && cdylib && name !~ /^fixture_/) print name "|" feats
        name = ""; cdylib = 0; feats = ""
    }
    END { flush() }
' Cargo.toml)

base=$(stat -c %s "$out/fibcache-default.stripped")
{
    echo "| artifact | bytes | MiB | stripped bytes | stripped MiB | stripped vs default binary |"
    echo "|---|---:|---:|---:|---:|---:|"
    for row in "${rows[@]}"; do
        IFS='|' read -r name label size stripped <<<"$row"
        awk -v n="$name" -v l="$label" -v s="$size" -v t="$stripped" -v b="$base" 'BEGIN {
            d = t - b
            if (n == "fibcache-default") delta = "(baseline)"
            else if (n !~ /^fibcache-/) delta = "—"
            else delta = sprintf("%s%.2f MiB", (d >= 0 ? "+" : "-"), (d < 0 ? -d : d) / 1048576)
            printf "| %s | %d | %.2f | %d | %.2f | %s |\n", l, s, s / 1048576, t, t / 1048576, delta
        }'
    done
    echo
    echo "Release profile (\`debug = \"line-tables-only\"\`), $(rustc --version), $(uname -m);" \
        "stripped with \`strip\`."
} | tee "$out/sizes.md"
