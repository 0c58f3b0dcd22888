"""Classify camera frames on the robot with an exported chainrule model, with nothing but
NumPy, ONNX Runtime and Pillow (to read the frames): chainrule itself is not needed.

On the training machine:

    chainrule train cnn --data photos/ --out runs/cnn    # photos/<class>/*.png
    chainrule export runs/cnn --out cnn.onnx

On the robot (pip install numpy onnxruntime pillow):

    python robot_onnx.py cnn.onnx frame.png other_frame.jpg

The .onnx file holds the whole path from pixels to answers: frames of any size are
resized to the model's size inside the graph (as `chainrule predict` resizes them), then
preprocessed and classified; its metadata holds the class names. Each line printed is the
one `chainrule predict runs/cnn FRAME` prints for the same frame.
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


class Classifier:
    """An exported chainrule model: ``classify(frame)`` -> (class name, probability)."""

    def __init__(self, path: str):
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.classes = json.loads(meta["classes"])  # classes[label] names a label
        self.labels = json.loads(meta["labels"])  # the label of each probability column
        self.channels = self.session.get_inputs()[0].shape[3]  # 3: RGB, 1: grayscale
        resize = json.loads(meta.get("resize") or "null")
        self.size = None if resize is None else (resize["height"], resize["width"])

    def read(self, path: str) -> np.ndarray:
        """A frame as the model takes it: uint8 (1, H, W, C), any H and W."""
        image = Image.open(path).convert("RGB")
        if self.channels == 1:
            image = image.convert("L")
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels.reshape(1, pixels.shape[0], pixels.shape[1], self.channels)

    def classify(self, frame: np.ndarray) -> tuple[str, float]:
        label, probabilities = self.session.run(["label", "probabilities"], {"images": frame})
        label = int(label[0])
        return self.classes[label], float(probabilities[0][self.labels.index(label)])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python robot_onnx.py MODEL.onnx FRAME [FRAME ...]", file=sys.stderr)
        return 2
    model = Classifier(argv[0])
    if model.size is not None:
        height, width = model.size
        print(f"frames are resized to {width}x{height} pixels in the graph", file=sys.stderr)
    width = max(len(path) for path in argv[1:])
    for path in argv[1:]:
        name, probability = model.classify(model.read(path))
        print(f"{path.ljust(width)}  {name}  {probability:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
