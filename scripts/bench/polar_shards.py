"""Read the token ids of a built polar dataset split (polar-groups-v1 shards), standard library only.

The layout is documented in include/polar/data/shards.h: a 64-byte header, 32-byte group records,
16-byte candidate records, then int32 tokens. A group is one prefix (prompt + reference) and its
candidates, [0] the chosen/positive and [1..] the rejected/negatives; each candidate's tokens end
with the reward token, so prefix ++ candidate is exactly the sequence polar scores.
"""
import array
import json
import struct
import sys
from pathlib import Path

HEADER = struct.Struct("<8sIIQQQ24x")
GROUP = struct.Struct("<QIIQI4x")
CANDIDATE = struct.Struct("<QI4x")


def _fail(path, what):
    sys.exit(f"error: {path}: {what}")


def read_shard(path):
    """Yield (prefix_ids, [candidate_ids, ...]) for every group of one shard file."""
    blob = Path(path).read_bytes()
    if len(blob) < HEADER.size:
        _fail(path, f"{len(blob)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, _, n_groups, n_candidates, n_tokens = HEADER.unpack_from(blob, 0)
    if magic != b"POLARGS1" or version != 1:
        _fail(path, f"magic {magic!r} version {version}, expected b'POLARGS1' version 1")
    groups_at = HEADER.size
    candidates_at = groups_at + n_groups * GROUP.size
    tokens_at = candidates_at + n_candidates * CANDIDATE.size
    if tokens_at + 4 * n_tokens != len(blob):
        _fail(path, f"{len(blob)} bytes, the header's counts need {tokens_at + 4 * n_tokens}")
    tokens = array.array("i")
    tokens.frombytes(blob[tokens_at:])
    if sys.byteorder != "little":
        tokens.byteswap()

    def span(offset, length, what):
        if offset + length > n_tokens:
            _fail(path, f"{what} [{offset}, {offset + length}) runs past the {n_tokens} tokens")
        return tokens[offset:offset + length].tolist()

    for g in range(n_groups):
        prefix_offset, prefix_len, n_cand, first, _category = GROUP.unpack_from(blob, groups_at + g * GROUP.size)
        if first + n_cand > n_candidates:
            _fail(path, f"group {g}: candidates [{first}, {first + n_cand}) past {n_candidates}")
        prefix = span(prefix_offset, prefix_len, f"group {g} prefix")
        cands = []
        for c in range(first, first + n_cand):
            offset, length = CANDIDATE.unpack_from(blob, candidates_at + c * CANDIDATE.size)
            cands.append(span(offset, length, f"candidate {c}"))
        yield prefix, cands


def read_split(split_dir):
    """All groups of a split directory (train/ or eval/), in stored order."""
    index_path = Path(split_dir) / "split.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as e:
        _fail(index_path, f"cannot read the split index ({e})")
    if index.get("format") != "polar-groups-v1":
        _fail(index_path, f"format {index.get('format')!r}, expected 'polar-groups-v1'")
    groups = []
    for name in index.get("shards", []):
        groups.extend(read_shard(Path(split_dir) / name))
    if len(groups) != index.get("groups"):
        _fail(index_path, f"lists {index.get('groups')} groups, the shards hold {len(groups)}")
    return groups
