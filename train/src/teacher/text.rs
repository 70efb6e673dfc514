//! Z for every KG node: the sentence embedding of its name (SPEC §5), with
//! a cache file so the encoder runs once per (KG content, model).
//!
//! Cache: a safetensors file with `Z` [N, dim] and metadata `cache_key`
//! (hex FNV-1a 64 over the node ids and names, and the bytes of the
//! encoder folder's config, tokenizer, sentence-transformers config and
//! weights) and `node_ids` (JSON list, KG order). A cache whose key differs
//! (or that is unreadable) is recomputed and replaced atomically.

use std::collections::HashMap;
use std::path::Path;

use kogner_models::teacher::text::SentenceEncoder;
use kogner_tensor::safetensors_io::{self, SafeTensorsFile};
use kogner_tensor::{Error, Result, Tensor};

use crate::kg::KnowledgeGraph;

/// FNV-1a, 64 bit: a small content hash (not cryptographic; it only has
/// to notice that the KG or the model changed).
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Hashes `bytes` with its length first, so concatenations of
    /// different splits never collide (`"ab","c"` vs `"a","bc"`).
    pub fn field(&mut self, bytes: &[u8]) {
        self.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

/// The files of an encoder folder that decide its embeddings (absent
/// optional ones hash as empty).
const MODEL_FILES: [&str; 5] = ["config.json", "tokenizer.json", "sentence_bert_config.json", "model.safetensors", "pytorch_model.bin"];

/// Cache key of (node ids + names, encoder folder content), 16 hex digits.
pub fn cache_key(kg: &KnowledgeGraph, encoder_dir: &Path) -> Result<String> {
    let mut h = Fnv1a::default();
    h.field(b"kogner-z-v1");
    for node in &kg.nodes {
        h.field(node.id.as_bytes());
        h.field(node.name.as_bytes());
    }
    for name in MODEL_FILES {
        let path = encoder_dir.join(name);
        let bytes = if path.is_file() { std::fs::read(&path).map_err(|e| Error::file(&path, e))? } else { Vec::new() };
        h.field(name.as_bytes());
        h.field(&bytes);
    }
    Ok(format!("{:016x}", h.finish()))
}

/// Z of every node and whether it came from the cache.
pub struct NodeTextEmbeddings {
    /// f32 [N, dim], KG node order.
    pub z: Tensor,
    pub cache_hit: bool,
}

/// The cached Z if `path` holds one with this key and node count.
fn read_cache(path: &Path, key: &str, n: usize) -> Option<Tensor> {
    let file = SafeTensorsFile::open(path).ok()?;
    if file.metadata().get("cache_key").map(String::as_str) != Some(key) {
        return None;
    }
    let z = file.get("Z").ok()?;
    (z.rank() == 2 && z.shape()[0] == n).then_some(z)
}

/// Z for `kg`'s node names with the encoder in `encoder_dir`, read from
/// `cache` when its key matches, else computed (`batch_size` names per
/// forward pass, `progress(done, total)`) and written to `cache`.
pub fn node_text_embeddings(
    kg: &KnowledgeGraph,
    encoder_dir: &Path,
    cache: Option<&Path>,
    batch_size: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<NodeTextEmbeddings> {
    let key = cache_key(kg, encoder_dir)?;
    if let Some(z) = cache.and_then(|p| read_cache(p, &key, kg.num_nodes())) {
        return Ok(NodeTextEmbeddings { z, cache_hit: true });
    }
    let encoder = SentenceEncoder::from_dir(encoder_dir)?;
    let names: Vec<&str> = kg.nodes.iter().map(|n| n.name.as_str()).collect();
    let z = encoder.embed_with_progress(&names, batch_size, progress)?;
    if let Some(path) = cache {
        let ids: Vec<&str> = kg.nodes.iter().map(|n| n.id.as_str()).collect();
        let meta = HashMap::from([
            ("cache_key".to_string(), key),
            ("node_ids".to_string(), serde_json::to_string(&ids).map_err(|e| Error::Msg(e.to_string()))?),
        ]);
        safetensors_io::save(path, &[("Z", &z)], Some(meta))?;
    }
    Ok(NodeTextEmbeddings { z, cache_hit: false })
}
