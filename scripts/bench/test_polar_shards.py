"""Checks scripts/bench/polar_shards.py: python3 scripts/bench/test_polar_shards.py [DATASET_DIR]

Writes a two-group shard by hand, reads it back, and checks that bad files are refused; given a
built dataset (e.g. data/quickstart/finetune), also checks its groups against split.json's counts.
"""
import json
import struct
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import polar_shards  # noqa: E402

DATASET = None


def shard_bytes(groups):
    """groups: [(prefix, [candidates])] -> the bytes of one polar-groups-v1 shard."""
    tokens, group_recs, cand_recs = [], b"", b""
    n_cand = 0
    for prefix, cands in groups:
        group_recs += polar_shards.GROUP.pack(len(tokens), len(prefix), len(cands), n_cand, 0)
        tokens += prefix
        for c in cands:
            cand_recs += polar_shards.CANDIDATE.pack(len(tokens), len(c))
            tokens += c
            n_cand += 1
    header = polar_shards.HEADER.pack(b"POLARGS1", 1, 0, len(groups), n_cand, len(tokens))
    return header + group_recs + cand_recs + struct.pack(f"<{len(tokens)}i", *tokens)


class PolarShardsTest(unittest.TestCase):
    GROUPS = [([1, 10, 11], [[20, 5], [21, 22, 5]]), ([1, 12], [[23, 5], [5]])]

    def write_split(self, tmp, blob, groups=2):
        (Path(tmp) / "shard-00000.bin").write_bytes(blob)
        (Path(tmp) / "split.json").write_text(json.dumps(
            {"format": "polar-groups-v1", "groups": groups, "shards": ["shard-00000.bin"]}))

    def test_round_trip(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.write_split(tmp, shard_bytes(self.GROUPS))
            self.assertEqual(polar_shards.read_split(tmp), self.GROUPS)

    def test_truncated_shard_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.write_split(tmp, shard_bytes(self.GROUPS)[:-4])
            with self.assertRaises(SystemExit) as e:
                polar_shards.read_split(tmp)
            self.assertIn("shard-00000.bin", str(e.exception))

    def test_bad_magic_and_group_count_are_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.write_split(tmp, b"NOTPOLAR" + shard_bytes(self.GROUPS)[8:])
            with self.assertRaises(SystemExit):
                polar_shards.read_split(tmp)
            self.write_split(tmp, shard_bytes(self.GROUPS), groups=3)
            with self.assertRaises(SystemExit) as e:
                polar_shards.read_split(tmp)
            self.assertIn("split.json", str(e.exception))

    def test_built_dataset(self):
        if not DATASET:
            self.skipTest("no built dataset given")
        split = Path(DATASET) / "train"
        index = json.loads((split / "split.json").read_text())
        groups = polar_shards.read_split(split)
        self.assertEqual(len(groups), index["groups"])
        self.assertEqual(sum(len(p) + sum(len(c) for c in cs) for p, cs in groups), index["tokens"])


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        DATASET = sys.argv.pop(1)
    unittest.main()
