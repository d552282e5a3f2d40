"""Text features: captions -> concatenated fastText word vectors."""

from t2v.text.featurizer import FastTextFeaturizer

__all__ = ["FastTextFeaturizer"]
