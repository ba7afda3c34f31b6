"""The official `tensorboard` package as the reference for contaccum's TensorBoardWriter.

  tensorboard_reference.py read EVENTS_DIR OUT.json

Loads the event files in EVENTS_DIR the way TensorBoard does and dumps what it would show:

  tags            the scalar tags of event_accumulator.EventAccumulator (the loader that
                  purges on SessionLog START), sorted
  scalars         {tag: [[step, value], ...]} from that accumulator, in its order
  plugin_scalars  the same from plugin_event_accumulator, the loader behind the Python
                  server (`tensorboard --load_fast=false`), which reads simple_value as a
                  0-d tensor and ignores the first SessionLog START of a run
  events          how many records the files hold

Every record's length and data CRCs are checked with the package's own TFRecord reader
(tensorflow_stub), which raises on a mismatch; EventFileLoader, which the accumulators use,
would stop at a bad record silently, so its count must agree. Each file must open with
file_version "brain.Event:2". Any failure exits non-zero.
"""
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator, event_file_loader, io_wrapper
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
from tensorboard.util import tensor_util


def checked_records(path):
    """Every record of one file, raising DataLossError on a bad CRC or truncation."""
    reader = pywrap_tensorflow.PyRecordReader_New(path)
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return
        yield reader.record()


def count_events(folder):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    files = [f for f in files if io_wrapper.IsSummaryEventsFile(f)]
    if not files:
        sys.exit(f"tensorboard_reference: no event file in {folder}")
    total = 0
    for path in files:
        events = [event_pb2.Event.FromString(r) for r in checked_records(path)]
        if not events or events[0].file_version != "brain.Event:2":
            sys.exit(f"tensorboard_reference: {path} does not start with file_version brain.Event:2")
        loaded = sum(1 for _ in event_file_loader.EventFileLoader(path).Load())
        if loaded != len(events):
            sys.exit(f"tensorboard_reference: {path}: EventFileLoader read {loaded} of {len(events)} events")
        total += len(events)
    return total


def read(folder, out_path):
    acc = event_accumulator.EventAccumulator(folder, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = sorted(acc.Tags()[event_accumulator.SCALARS])
    scalars = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags}

    plugin = plugin_event_accumulator.EventAccumulator(folder, size_guidance={plugin_event_accumulator.TENSORS: 0})
    plugin.Reload()
    plugin_scalars = {tag: [[e.step, float(tensor_util.make_ndarray(e.tensor_proto).item())]
                            for e in plugin.Tensors(tag)]
                      for tag in sorted(plugin.Tags()[plugin_event_accumulator.TENSORS])}

    with open(out_path, "w") as f:
        json.dump({"tags": tags, "scalars": scalars, "plugin_scalars": plugin_scalars,
                   "events": count_events(folder)}, f)


def main():
    if len(sys.argv) != 4 or sys.argv[1] != "read":
        sys.exit(__doc__)
    read(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
