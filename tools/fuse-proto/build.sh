#!/usr/bin/env bash
# Builds tools/fuse-proto/fuse-proto and statstorm with cc (not part of swift build). Output: $1 or ./build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
mkdir -p "$out"
CFLAGS="-O2 -g -Wall -Wextra -Wno-unused-parameter -pthread"
cc $CFLAGS -o "$out/fuse-proto" "$here"/main.c "$here"/core.c "$here"/t_raw.c "$here"/t_libfuse.c $(pkg-config --cflags --libs fuse3)
cc $CFLAGS -o "$out/statstorm" "$here"/statstorm.c
