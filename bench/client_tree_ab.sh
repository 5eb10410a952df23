#!/usr/bin/env bash
# Client-side A/B of `grid put` and `grid get`: alternates the put of one file between two source trees of
# gridfs (a commit's, unpacked with git archive, and the working tree) against one running grid, with the file
# out of the page cache ("cold": as a backup reads files written long ago) and in it ("warm"), then the get of
# the object into a new file beside it. Prints each run's client CPU (user and system seconds, from
# /usr/bin/time) and wall time. Servers are the grid's own: only the client differs.
#
#   flock /tmp/bench.lock bench/client_tree_ab.sh GRID_TOML FILE [BASE_COMMIT (default HEAD)] [POLICY] [ROUNDS]
#
# SPDX-License-Identifier: AGPL-3.0-or-later
set -euo pipefail
config=$1 file=$2 base=${3:-HEAD} policy=${4:-EC63-ISAL} rounds=${5:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
py=$here/.venv/bin/python
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git -C "$here" archive "$base" gridfs | tar -x -C "$old"
config=$(realpath "$config") file=$(realpath "$file")
cd "$old"/..  # python -m puts the current folder first on sys.path: never a tree's own folder
"$py" -m gridfs.cli.main --config "$config" mb put-ab >/dev/null 2>&1 || true
evict() { "$py" -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$file"; }
warm() { cat "$file" > /dev/null; }
for temp in cold warm; do
  for _ in $(seq "$rounds"); do
    for tree in "$old" "$here"; do
      name=$([ "$tree" = "$here" ] && echo "working tree" || echo "$base")
      if [ "$temp" = cold ]; then evict; else warm; fi
      PYTHONPATH=$tree /usr/bin/time -f "$temp, $name: client %U user + %S system s, %e s wall" \
        "$py" -m gridfs.cli.main --config "$config" put "$file" put-ab/object --policy "$policy" > /dev/null
    done
  done
done
for _ in $(seq "$rounds"); do
  for tree in "$old" "$here"; do
    name=$([ "$tree" = "$here" ] && echo "working tree" || echo "$base")
    rm -f "$file.back"
    PYTHONPATH=$tree /usr/bin/time -f "get into a file, $name: client %U user + %S system s, %e s wall" \
      "$py" -m gridfs.cli.main --config "$config" get put-ab/object "$file.back" > /dev/null
  done
done
rm -f "$file.back"
