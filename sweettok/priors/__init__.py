"""MLC codebook priors: lexicon, word embeddings, word graph, prior files (ours and the original pickles)."""

from sweettok.priors.build import PRIOR_SPECS, build_prior, nearest_words
from sweettok.priors.prior import Prior, load_original_prior, load_prior, save_prior

__all__ = ["PRIOR_SPECS", "Prior", "build_prior", "load_original_prior", "load_prior", "nearest_words", "save_prior"]
