//! Nodes and edges of a KG directory (`nodes.tsv[.gz]`, `edges.tsv[.gz]`).
//!
//! `nodes.tsv`: header `id name type synonyms`, synonyms `|`-separated
//! (possibly empty). `edges.tsv`: header `head relation tail`. Rejected with
//! the file and line: wrong cell count, empty id/type/relation, empty
//! synonym item, duplicate node ids, edges naming an unknown node.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use kogner_tensor::{Error, Result};

use super::adjacency::InAdjacency;
use super::tsv;

/// One node row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub node_type: String,
    pub synonyms: Vec<String>,
}

/// A typed, directed multi-relational graph with dense indices.
#[derive(Clone, Debug)]
pub struct KnowledgeGraph {
    /// Nodes in file row order (node index = row index).
    pub nodes: Vec<Node>,
    /// Sorted distinct relation names (relation index = position).
    pub relation_names: Vec<String>,
    /// Sorted distinct node type names (type index = position).
    pub type_names: Vec<String>,
    /// Type index of every node.
    pub node_types: Vec<u32>,
    /// Edges in file order as (head, relation, tail) indices.
    pub edges: Vec<[u32; 3]>,
    id_index: HashMap<String, u32>,
}

impl KnowledgeGraph {
    /// Loads `dir/nodes.tsv` (or `.tsv.gz`) and `dir/edges.tsv` (or `.tsv.gz`).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<KnowledgeGraph> {
        let dir = dir.as_ref();
        Self::load(
            tsv::plain_or_gz(dir, "nodes.tsv")?,
            tsv::plain_or_gz(dir, "edges.tsv")?,
        )
    }

    /// Loads the two files (each gunzipped when its name ends in `.gz`).
    pub fn load(
        nodes_path: impl AsRef<Path>,
        edges_path: impl AsRef<Path>,
    ) -> Result<KnowledgeGraph> {
        let (nodes_path, edges_path) = (nodes_path.as_ref(), edges_path.as_ref());
        let nodes = parse_nodes(nodes_path, &tsv::read_text(nodes_path)?)?;
        Self::from_nodes_and_edge_text(nodes, edges_path, &tsv::read_text(edges_path)?)
    }

    fn from_nodes_and_edge_text(
        nodes: Vec<Node>,
        edges_path: &Path,
        text: &str,
    ) -> Result<KnowledgeGraph> {
        // Ids are unique (checked by `parse_nodes`); u32 indices suffice.
        if u32::try_from(nodes.len()).is_err() {
            return Err(Error::file(edges_path, "more than 2^32 - 1 nodes"));
        }
        let id_index: HashMap<String, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i as u32))
            .collect();
        let type_names: Vec<String> = nodes
            .iter()
            .map(|n| n.node_type.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(String::from)
            .collect();
        let type_index: HashMap<&str, u32> = type_names
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let node_types = nodes
            .iter()
            .map(|n| type_index[n.node_type.as_str()])
            .collect();

        // Edges: resolve node ids now, relation names after all are known.
        let mut lines = tsv::lines(edges_path, text);
        tsv::expect_header(edges_path, lines.next(), &["head", "relation", "tail"])?;
        let mut raw: Vec<(u32, &str, u32)> = Vec::new();
        for item in lines {
            let (line_no, line) = item?;
            let c = tsv::cells(edges_path, line_no, line, 3)?;
            let node = |id: &str, what: &str| {
                id_index.get(id).copied().ok_or_else(|| {
                    Error::file(
                        edges_path,
                        format!("line {line_no}: dangling edge: {what} {id:?} is not a node id"),
                    )
                })
            };
            if c[1].is_empty() {
                return Err(Error::file(
                    edges_path,
                    format!("line {line_no}: empty relation"),
                ));
            }
            raw.push((node(c[0], "head")?, c[1], node(c[2], "tail")?));
        }
        let relation_names: Vec<String> = raw
            .iter()
            .map(|e| e.1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(String::from)
            .collect();
        let rel_index: HashMap<&str, u32> = relation_names
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i as u32))
            .collect();
        let edges = raw.iter().map(|&(h, r, t)| [h, rel_index[r], t]).collect();
        Ok(KnowledgeGraph {
            nodes,
            relation_names,
            type_names,
            node_types,
            edges,
            id_index,
        })
    }

    /// Index of a node id.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.id_index.get(id).map(|&i| i as usize)
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn num_relations(&self) -> usize {
        self.relation_names.len()
    }

    /// Relation names including the reverse types: `names ++ rev_<names>`
    /// (reverse of relation `r` has index `r + R`).
    pub fn relation_names_with_reverse(&self) -> Vec<String> {
        let rev = self.relation_names.iter().map(|r| format!("rev_{r}"));
        self.relation_names.iter().cloned().chain(rev).collect()
    }

    /// In-edge CSR over the edges plus their reverses (see [`InAdjacency`]).
    pub fn in_adjacency(&self) -> InAdjacency {
        InAdjacency::with_reverse(self.num_nodes(), self.num_relations(), &self.edges)
    }

    /// Nodes that have no edge in either direction.
    pub fn isolated_nodes(&self) -> Vec<usize> {
        let mut seen = vec![false; self.num_nodes()];
        for &[h, _, t] in &self.edges {
            seen[h as usize] = true;
            seen[t as usize] = true;
        }
        seen.iter()
            .enumerate()
            .filter(|(_, &s)| !s)
            .map(|(i, _)| i)
            .collect()
    }
}

/// Parses `nodes.tsv` into nodes in row order.
fn parse_nodes(path: &Path, text: &str) -> Result<Vec<Node>> {
    let mut lines = tsv::lines(path, text);
    tsv::expect_header(path, lines.next(), &["id", "name", "type", "synonyms"])?;
    let mut out = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for item in lines {
        let (line_no, line) = item?;
        let c = tsv::cells(path, line_no, line, 4)?;
        if c[0].is_empty() {
            return Err(Error::file(path, format!("line {line_no}: empty node id")));
        }
        if c[2].is_empty() {
            return Err(Error::file(
                path,
                format!("line {line_no}: empty node type for {:?}", c[0]),
            ));
        }
        if let Some(first) = seen.insert(c[0], line_no) {
            return Err(Error::file(
                path,
                format!(
                    "line {line_no}: duplicate node id {:?} (first on line {first})",
                    c[0]
                ),
            ));
        }
        let synonyms: Vec<String> = if c[3].is_empty() {
            Vec::new()
        } else {
            c[3].split('|').map(String::from).collect()
        };
        if synonyms.iter().any(String::is_empty) {
            return Err(Error::file(
                path,
                format!("line {line_no}: empty item in synonyms {:?}", c[3]),
            ));
        }
        out.push(Node {
            id: c[0].into(),
            name: c[1].into(),
            node_type: c[2].into(),
            synonyms,
        });
    }
    Ok(out)
}
