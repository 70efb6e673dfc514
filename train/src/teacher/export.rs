//! H = [Z ; Z' ; Z''] export.
