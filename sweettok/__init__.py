"""SweetTok: semantic-aware spatial-temporal video tokenizer (ICCV 2025), re-implemented.

``sweettok.from_pretrained(folder)`` loads a tokenizer export (see ``sweettok.api``); it is
imported on first use, so ``import sweettok`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy public API: ``from_pretrained`` imports torch and the model code only when first asked for."""
    if name == "from_pretrained":
        from sweettok.api import from_pretrained

        return from_pretrained
    raise AttributeError(f"module 'sweettok' has no attribute {name!r}")
