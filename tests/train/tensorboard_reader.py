"""Reads a TensorBoard log directory with the tensorboard package's own readers and writes every
scalar they keep as JSON: {"scalars": {tag: [[step, value], ...]}, "tensors": {...}}.

"scalars" comes from event_accumulator.EventAccumulator (Scalars), "tensors" from
plugin_event_accumulator.EventAccumulator (what `tensorboard --logdir` serves: scalars migrated
to tensors). Both purge orphaned data on a SessionLog START, as TensorBoard does by default.

usage: tensorboard_reader.py LOGDIR OUT.json
"""
import json
import math
import sys

from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
from tensorboard.util import tensor_util


def number(x):
    x = float(x)
    return x if math.isfinite(x) else str(x)  # JSON has no NaN or infinity


def main():
    logdir, out = sys.argv[1], sys.argv[2]
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    scalars = {tag: [[e.step, number(e.value)] for e in acc.Scalars(tag)]
               for tag in acc.Tags()["scalars"]}
    plugin = plugin_event_accumulator.EventAccumulator(
        logdir, size_guidance={plugin_event_accumulator.TENSORS: 0})
    plugin.Reload()
    tensors = {tag: [[e.step, number(tensor_util.make_ndarray(e.tensor_proto))]
                     for e in plugin.Tensors(tag)]
               for tag in plugin.Tags()["tensors"]}
    with open(out, "w") as f:
        json.dump({"scalars": scalars, "tensors": tensors}, f)


if __name__ == "__main__":
    main()
