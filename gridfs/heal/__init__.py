"""Self-healing: rebuild of a lost volume, drain of a volume, the rebuilder service that
starts rebuilds on its own, and the event handler that repairs objects whose chunks were
found corrupt, missing, or not written.

Everything here works from the reverse index (:mod:`gridfs.rdir`) to find what a volume
held, and from the directory (meta2) to decide: the index is a hint, the directory is the
truth, and a chunk is moved only by a repair commit that checks the object version is
unchanged.

SPDX-License-Identifier: LGPL-3.0-or-later
"""
