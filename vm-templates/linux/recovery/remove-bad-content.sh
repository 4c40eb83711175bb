#!/bin/sh
# The sample recovery script: remove the bad channel files, and only them.
#
# The CrowdStrike guidance for the Channel File 291 outage was: boot into Safe Mode or
# the Windows Recovery Environment, open the sensor's directory and delete the
# C-00000291*.sys file timestamped 04:09 UTC, leaving the other channel files alone.
# Here the harness names the bad update exactly, in $HARNESS_BAD_FILES, one line per
# file in sha256sum format:
#
#     <sha256 hex>  <file name>
#
# For each line: if $HARNESS_CONTENT_DIR/<file name> exists and its SHA-256 is the listed
# one, delete it ("removed <name>"); if it exists with other content, keep it ("kept
# <name>: sha256 differs"): it is not the bad update.  A file not listed is never touched.
#
# Exit status: 0 when every listed file is gone (removed now, or never there), 1 otherwise
# (a file kept, a line that cannot be read, a file that could not be removed).
#
# Runs under busybox sh (POSIX sh) with cwd /, in the reference guest's safe mode
# (HARNESS_RECOVERY_PATH=safe-mode) or recovery environment (recovery-env); each line
# it prints appears on the guest's console as "recovery: <line>".

content=${HARNESS_CONTENT_DIR:-/data/content}
list=${HARNESS_BAD_FILES:-/media/bad-files.txt}

if [ ! -r "$list" ]; then
    echo "cannot read the list of bad files $list"
    exit 1
fi
if [ ! -d "$content" ]; then
    echo "no content directory $content: nothing to remove"
fi

status=0
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    case "$line" in
        ''|'#'*) continue ;;
    esac
    hash=${line%% *}
    name=${line#"$hash"}
    name=${name#' '}
    name=${name#[ *]}  # sha256sum: two spaces (text mode) or " *" (binary mode)
    hash=$(echo "$hash" | tr 'A-F' 'a-f')
    case "$hash" in
        *[!0-9a-f]*|'') ok=0 ;;
        *) [ "${#hash}" -eq 64 ] && ok=1 || ok=0 ;;
    esac
    case "$name" in
        ''|.|..|*/*) ok=0 ;;
    esac
    if [ "$ok" != 1 ]; then
        echo "skipped line $lineno of $list: not '<sha256>  <file name>'"
        status=1
        continue
    fi
    file=$content/$name
    if [ -L "$file" ] || { [ -e "$file" ] && [ ! -f "$file" ]; }; then
        echo "kept $name: not a regular file"
        status=1
        continue
    fi
    if [ ! -e "$file" ]; then
        echo "absent $name"
        continue
    fi
    actual=$(sha256sum "$file" 2>&1)
    actual=${actual%% *}
    if [ "$actual" != "$hash" ]; then
        echo "kept $name: sha256 differs"
        status=1
        continue
    fi
    if rm -f "$file" && [ ! -e "$file" ]; then
        echo "removed $name"
    else
        echo "failed $name: could not remove it"
        status=1
    fi
done < "$list"

sync
exit "$status"
