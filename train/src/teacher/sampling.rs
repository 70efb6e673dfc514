//! neighbour-sampled mini-batches for the graph transformer.
