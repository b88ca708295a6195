# shellcheck shell=bash
# SHA-256 checks for the setup scripts, sourced (never run): GNU coreutils'
# `sha256sum` where it exists (Linux), else `shasum -a 256` (Perl's, part of
# every macOS; not every macOS 14 has `sha256sum`). A missing tool stops the
# script with a message that says so: it is never reported as a mismatch.
# bash 3.2 (macOS's /bin/bash) is enough.

# _sha256_need_tool: picks the tool (FT_SHA256_TOOL); stops the script if none.
# Call it in the script's own shell (not in `$(...)`), so that `exit` ends
# the script rather than a subshell.
_sha256_need_tool() {
  if command -v sha256sum >/dev/null 2>&1; then
    FT_SHA256_TOOL=sha256sum
  elif command -v shasum >/dev/null 2>&1; then
    FT_SHA256_TOOL=shasum
  else
    printf '%s: error: cannot check SHA-256 checksums: neither sha256sum (GNU coreutils) nor shasum (Perl, part of macOS) is on PATH\n' \
      "${0##*/}" >&2
    exit 1
  fi
}

# sha256_of FILE: prints FILE's SHA-256 in hex (fails if FILE cannot be read).
sha256_of() {
  _sha256_need_tool
  local out
  if [ "$FT_SHA256_TOOL" = sha256sum ]; then
    out="$(sha256sum -- "$1")" || return 1
  else
    out="$(shasum -a 256 -- "$1")" || return 1
  fi
  printf '%s\n' "${out%% *}"
}

# sha256_matches FILE SHA256: true when FILE exists and has that checksum.
sha256_matches() {
  _sha256_need_tool
  [ -f "$1" ] || return 1
  local got
  got="$(sha256_of "$1")" || return 1
  [ "$got" = "$2" ]
}

# sha256_check FILE SHA256 WHAT: stops the script unless FILE has that checksum,
# naming both sums.
sha256_check() {
  _sha256_need_tool
  [ -f "$1" ] || { printf '%s: error: %s: %s is missing\n' "${0##*/}" "$3" "$1" >&2; exit 1; }
  local got
  got="$(sha256_of "$1")" || { printf '%s: error: %s: cannot read %s\n' "${0##*/}" "$3" "$1" >&2; exit 1; }
  if [ "$got" != "$2" ]; then
    printf '%s: error: %s: checksum does not match (expected %s, got %s)\n' "${0##*/}" "$3" "$2" "$got" >&2
    exit 1
  fi
}
