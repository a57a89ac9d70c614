"""SweetTok: semantic-aware spatial-temporal video tokenizer (ICCV 2025), re-implemented."""

__version__ = "0.1.0"
