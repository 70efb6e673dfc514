//! Z: sentence embeddings of node names (MiniLM mean pooling + L2), SPEC §5.
