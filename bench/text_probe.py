"""How much of each attribute the text representations keep, on seen and held-out combinations.

    python bench/text_probe.py [--artifacts-dir artifacts] [--siamese latest|<artifact folder>] [--steps 300]

A linear classifier per attribute is trained on the training captions' representation and read on the
test captions, split into seen and held-out attribute combinations (data.held_out). Four representations
of the same captions, in the order the pipeline computes them: the fastText features (7,500-d), the mean
of their word vectors (what the siamese option ``word_mean`` adds), the frozen VAE's code (its mean), and
the siamese text embedding that stage-I is conditioned on. A generator conditioned on a representation
can hardly show what a linear reader cannot find in it. This is a benchmark, not a test: it reads the
chain in the artifact registry.

A second table asks the siamese model itself, image and text branch together: for the first frame of a
real clip, which of the captions that differ from its own in one attribute only (every value of it, same
wording) is nearest? Chance is one over the number of values.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from t2v.data.shapes import ATTRIBUTES, CaptionedShapes  # noqa: E402
from t2v.eval.probe import labels_of, to_tensor  # noqa: E402
from t2v.models.siamese import SiameseEmbedding, TextEncoder, word_mean  # noqa: E402
from t2v.pipeline import artifacts  # noqa: E402
from t2v.text.featurizer import FastTextFeaturizer  # noqa: E402

DATA_KEYS = ("num_clips", "frames", "size", "val_fraction", "test_fraction", "held_out", "seed", "vocabulary")


def representations(encoder: TextEncoder, features: Tensor) -> dict[str, Tensor]:
    with torch.no_grad():
        code, _ = encoder.vae.encode(features)
        return {
            "fastText features": features,
            "word mean": word_mean(features, encoder.vae.hparams.word_dim),
            "VAE code": code,
            "siamese embedding": encoder(features),
        }


def linear_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, steps: int) -> Tensor:
    """Per-caption correctness (bool) of a softmax regression fitted on standardised training inputs."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    classes = int(max(train_y.max(), test_y.max())) + 1
    layer = torch.nn.Linear(train_x.shape[1], classes)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(layer(train_x), train_y).backward()
        optimizer.step()
    with torch.no_grad():
        return layer(test_x).argmax(1) == test_y


@torch.no_grad()
def caption_choice(siamese: SiameseEmbedding, featurizer: FastTextFeaturizer, shapes: CaptionedShapes,
                   indices: np.ndarray, image: Tensor, attribute: str) -> Tensor:  # fmt: skip
    """Per clip of ``indices``: whether its first frame's embedding (a row of ``image``) is nearest to its
    own caption among the captions that differ from it in ``attribute`` alone."""
    values = shapes.vocab[attribute]
    captions = [shapes.caption_for({**shapes.attributes_of(int(i)), attribute: v}) for i in indices for v in values]
    text = siamese.text_encoder(torch.from_numpy(featurizer.transform(captions)[0])).view(len(indices), len(values), -1)
    nearest = (text - image[:, None]).pow(2).sum(-1).argmin(1)
    return nearest == labels_of(shapes, indices)[attribute]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts-dir", default=str(ROOT / "artifacts"))
    parser.add_argument("--siamese", default="latest", help="latest, or a siamese artifact folder")
    parser.add_argument("--steps", type=int, default=300, help="full-batch Adam steps per classifier")
    parser.add_argument("--clips", type=int, default=256, help="clips per split for the caption choice")
    args = parser.parse_args()
    folder = artifacts.find(args.artifacts_dir, "siamese", args.siamese)
    if folder is None:
        sys.exit(f"no siamese artifact {args.siamese} in {args.artifacts_dir}; make one: python train.py stage=siamese")
    manifest = artifacts.read_manifest(folder)
    data = manifest["config"]["data"]
    shapes = CaptionedShapes(**{k: data[k] for k in DATA_KEYS if k in data and (k != "vocabulary" or data[k])})
    featurizer = FastTextFeaturizer.load(manifest["featurizer_dir"])
    siamese = SiameseEmbedding.load_from_checkpoint(manifest["checkpoint"], map_location="cpu").eval()
    encoder = siamese.text_encoder

    train, test = shapes.split_indices("train"), shapes.split_indices("test")
    held = torch.from_numpy(shapes.is_held_out()[test])
    train_rep, test_rep = (
        representations(encoder, torch.from_numpy(featurizer.transform([shapes.captions[i] for i in idx])[0]))
        for idx in (train, test)
    )
    train_y, test_y = labels_of(shapes, train), labels_of(shapes, test)
    print(f"siamese artifact {folder}; {len(train)} training captions, {len(test)} test ({int(held.sum())} held-out)")
    print("linear read-out accuracy, seen / held-out combinations of the test split")
    print(f"| representation | dims | {' | '.join(ATTRIBUTES)} |")
    print(f"|---|---|{'---|' * len(ATTRIBUTES)}")
    for name, x in train_rep.items():
        cells = []
        for attr in ATTRIBUTES:
            right = linear_accuracy(x, train_y[attr], test_rep[name], test_y[attr], args.steps).float()
            cells.append(f"{right[~held].mean():.0%} / {right[held].mean():.0%}")
        print(f"| {name} | {x.shape[1]} | {' | '.join(cells)} |", flush=True)

    attributes = ("shape", "colour", "size")
    print(f"\nthe siamese model's caption choice for real first frames ({args.clips} clips per split)")
    print(f"| split | {' | '.join(attributes)} |")
    print(f"|---|{'---|' * len(attributes)}")
    for split, indices in (("train", train[: args.clips]), ("test", test[: args.clips])):
        with torch.no_grad():
            image = siamese.image_encoder(to_tensor(shapes.render(indices))[:, :, 0])
        chosen = [caption_choice(siamese, featurizer, shapes, indices, image, a).float().mean() for a in attributes]
        cells = [f"{right:.0%}" for right in chosen]
        print(f"| {split} | {' | '.join(cells)} |", flush=True)
    print(f"| chance | {' | '.join(f'{1 / len(shapes.vocab[a]):.0%}' for a in attributes)} |")


if __name__ == "__main__":
    main()
