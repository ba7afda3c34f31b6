#!/usr/bin/env bash
# `retrieval search` over a damaged cached index, then a session on standard input with a
# line that is not UTF-8:
#   1. a copy of the fixture's index with rows overwritten by zeros is detected by its
#      checksum and rebuilt (the answer is right again), not used to give wrong rankings;
#   2. on standard input a bad line is skipped with its line number and the session goes
#      on; ":q" ends it (the line after it is never answered).
#
#   search_damaged_index.sh RETRIEVAL_BINARY FIXTURE_INDEX_DIR WORK_DIR --data DIR --model DIR
set -euo pipefail
bin="$1"
fixture="$2"
work="$3"
shift 3
inputs=("$@")
rm -rf "$work"
mkdir -p "$work"
say() { echo "[search_damaged_index] $*"; }

index=$(ls "$fixture"/index-*.safetensors | head -n 1)
cp "$index" "$work/"
copy="$work/$(basename "$index")"
size=$(stat -c %s "$copy")
# 4 KiB of zeros in the middle of the embedding rows (past the header at the start)
dd if=/dev/zero of="$copy" bs=1 seek=$((size / 2)) count=4096 conv=notrunc status=none
search=("$bin" search "${inputs[@]}" --limit 600 --k 3 --index-dir "$work")

out=$("${search[@]}" "a word processor" 2>&1) || { echo "$out"; exit 1; }
echo "$out"
grep -q "the cached index is not used: its checksum does not match its rows" <<<"$out" || { say "damage not detected"; exit 1; }
grep -Eq "^   1  [0-9.]+  abiword" <<<"$out" || { say "wrong answer after the rebuild"; exit 1; }

out=$(printf 'a word processor\nbad \xff\xfe line\nrip an audio CD to mp3 or ogg files\n:q\nnever answered\n' |
      "${search[@]}" 2>&1) || { echo "$out"; exit 1; }
echo "$out"
grep -q "600 passages loaded from" <<<"$out" || { say "the rebuilt index was not reused"; exit 1; }
grep -q "standard input line 2 skipped: contaccum: text is not valid UTF-8" <<<"$out" || { say "bad line not named"; exit 1; }
grep -q "query: rip an audio CD to mp3 or ogg files" <<<"$out" || { say "the session ended at the bad line"; exit 1; }
if grep -q "never answered" <<<"$out"; then say ":q did not end the session"; exit 1; fi
say ok
