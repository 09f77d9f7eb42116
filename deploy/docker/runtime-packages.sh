#!/bin/sh
# runtime-packages.sh BINARY...
#
# Prints, one per line, the Debian/Ubuntu packages that own the shared
# libraries the given binaries link directly (their ELF NEEDED entries, as
# ldd resolves them here), so a runtime image installs exactly what the build
# stage linked instead of a hand-kept list that drifts when a daemon gains a
# dependency. apt-get brings those packages' own dependencies. Libraries that
# no package owns (a pip LibTorch under /opt, say) are named on stderr and
# left to the Dockerfile to copy. Fails if any library is "not found".
# Libraries loaded with dlopen() are not ELF NEEDED entries, so the Dockerfiles
# add them by name: libonig5 (Oniguruma, common/tokenizer/onig_regex.cc).
#
# Needs readelf (binutils), ldd (libc-bin) and dpkg-query: all in the build
# stages, which install build-essential.
#
# Example (build stage):
#   deploy/docker/runtime-packages.sh build/coordinator/baq-coordinator > /out/packages.txt
set -eu
[ "$#" -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

for bin in "$@"; do
  resolved=$(ldd "$bin")
  if printf '%s\n' "$resolved" | grep -q 'not found'; then
    printf '%s: %s\n' "$bin" "$(printf '%s\n' "$resolved" | grep 'not found')" >&2
    exit 1
  fi
  for needed in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    printf '%s\n' "$resolved" | awk -v n="$needed" '$1 == n && $2 == "=>" { print $3 }'
  done
done | sort -u |
while read -r lib; do
  real=$(readlink -f "$lib")
  owner=""
  # Debian 12 and Ubuntu 24.04 are merged-/usr: ldd may print /lib/... while
  # dpkg records /usr/lib/... (or the reverse), so try both spellings.
  for path in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
    owner=$(dpkg-query -S "$path" 2>/dev/null | head -n1 | cut -d: -f1) || owner=""
    [ -n "$owner" ] && break
  done
  if [ -n "$owner" ]; then
    echo "$owner"
  else
    echo "runtime-packages.sh: no package owns $lib (copy it into the image)" >&2
  fi
done | sort -u
