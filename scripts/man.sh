#!/usr/bin/env bash
# Man pages from the binaries' own --help (help2man), one per binary, with every
# subcommand's --help in a COMMANDS section: target/man/<bin>.1.gz, for the package.
#   ./scripts/man.sh [DIR-WITH-BINARIES]   (default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
bins="${1:-target/release}"
out=target/man
mkdir -p "$out"

# The names under "Commands:" in a --help text (not "help").
subcommands() {
  "$@" --help | awk '/^Commands:/{on=1; next} on && /^$/{exit} on {print $1}' | grep -vx help || true
}

# Every subcommand's help, nested ones too ("route add"), as a help2man include file.
commands_section() {
  local bin=$1
  shift
  local sub
  for sub in $(subcommands "$bin" "$@"); do
    printf '.SS "%s"\n.nf\n' "$(basename "$bin") ${*:+$* }$sub"
    # Backslashes doubled, then lines that start with a dot or quote escaped (roff).
    "$bin" "$@" "$sub" --help | sed 's/\\/\\\\/g; s/^\([.'"'"']\)/\\\&\1/'
    printf '.fi\n'
    commands_section "$bin" "$@" "$sub"
  done
}

for name in x0-dataplane x0-brain x0ctl; do
  include=$(mktemp)
  { echo "[COMMANDS]"; commands_section "$bins/$name"; } >"$include"
  help2man --no-info --section 1 --include "$include" \
    --name "$("$bins/$name" --help | head -1)" "$bins/$name" | gzip -9n >"$out/$name.1.gz"
  rm -f "$include"
  echo "[man] $out/$name.1.gz"
done
