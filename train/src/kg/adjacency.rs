//! Compressed sparse in-edges by target node, reverse edges included.
//!
//! Edge columns follow the graph-transformer fixture's `edge_index`: columns
//! `0..E` are the KG edges head → tail in file order with relation `r`,
//! columns `E..2E` the same edges reversed tail → head with relation `r + R`.
//! For target node `i`, `offsets[i]..offsets[i+1]` indexes its in-edges,
//! listed in increasing column order. Built by a counting sort: O(N + E).

/// In-edge CSR (messages flow source → target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InAdjacency {
    /// `num_nodes + 1` offsets into the edge arrays.
    pub offsets: Vec<usize>,
    /// Source (sender) node of each in-edge.
    pub sources: Vec<u32>,
    /// Relation type of each in-edge (`0..2R`).
    pub relations: Vec<u32>,
    /// The edge's column in the (2, 2E) `edge_index` layout.
    pub columns: Vec<u32>,
}

impl InAdjacency {
    /// Builds the CSR of `edges` (head, relation, tail) plus their reverses
    /// (tail → head, relation + `num_relations`).
    pub fn with_reverse(num_nodes: usize, num_relations: usize, edges: &[[u32; 3]]) -> InAdjacency {
        let e = edges.len();
        // Column c: (source, relation, target).
        let column = |c: usize| -> (u32, u32, u32) {
            if c < e {
                let [h, r, t] = edges[c];
                (h, r, t)
            } else {
                let [h, r, t] = edges[c - e];
                (t, r + num_relations as u32, h)
            }
        };
        let mut offsets = vec![0usize; num_nodes + 1];
        for c in 0..2 * e {
            offsets[column(c).2 as usize + 1] += 1;
        }
        for i in 0..num_nodes {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let (mut sources, mut relations, mut columns) =
            (vec![0u32; 2 * e], vec![0u32; 2 * e], vec![0u32; 2 * e]);
        for c in 0..2 * e {
            let (s, r, t) = column(c);
            let slot = next[t as usize];
            next[t as usize] += 1;
            sources[slot] = s;
            relations[slot] = r;
            columns[slot] = c as u32;
        }
        InAdjacency {
            offsets,
            sources,
            relations,
            columns,
        }
    }

    pub fn num_nodes(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn num_edges(&self) -> usize {
        self.sources.len()
    }

    /// In-degree of node `i` (reverse edges included).
    pub fn in_degree(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }

    /// The in-edge index range of node `i`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i + 1]
    }
}
