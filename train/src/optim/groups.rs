//! Parameter groups: which parameters an optimiser updates at which
//! learning rate and weight decay.

use kogner_autograd::ParamStore;

/// Parameters whose names contain this are GLiNER's "encoder" (the
/// transformer and the `token_rep_layer.projection`).
pub const GLINER_ENCODER_MARKER: &str = "token_rep_layer";

/// Parameters updated with one learning rate and weight decay.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    /// A label for messages and checkpoints (e.g. `"encoder/no_decay"`).
    pub name: String,
    /// Base learning rate (a schedule multiplies it).
    pub lr: f64,
    /// Decoupled weight decay coefficient.
    pub weight_decay: f64,
    /// Parameter names (as in the [`ParamStore`]).
    pub params: Vec<String>,
}

/// Learning rates and weight decays of GLiNER's two parameter sets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlinerGroupHyper {
    /// `learning_rate`: the encoder's.
    pub encoder_lr: f64,
    /// `weight_decay`: the encoder's.
    pub encoder_weight_decay: f64,
    /// `others_lr`: everything else (LSTM, span and prompt layers).
    pub head_lr: f64,
    /// `others_weight_decay`.
    pub head_weight_decay: f64,
}

/// Whether weight decay applies to a parameter, by its state-dict name:
/// not for anything named "bias" (LSTM `bias_ih_l0` included) and not for
/// LayerNorm parameters. Hugging Face decides the latter by module type
/// (`ALL_LAYERNORM_LAYERS`); from names alone, a parameter is inside a
/// LayerNorm when its lowercased name contains `layernorm` or `layer_norm`
/// (every LayerNorm of the DeBERTa/BERT encoders is a `LayerNorm` module;
/// the GLiNER head has none).
pub fn is_decayed(name: &str) -> bool {
    let lower = name.to_lowercase();
    !(name.contains("bias") || lower.contains("layernorm") || lower.contains("layer_norm"))
}

/// GLiNER `Trainer.create_optimizer` with `others_lr` set: four groups in
/// its order — head+decay, head+no-decay (wd 0), encoder+decay,
/// encoder+no-decay (wd 0). Names within a group are sorted (the update does
/// not depend on the order). Empty groups are kept, as GLiNER does.
pub fn gliner_param_groups(params: &ParamStore, h: &GlinerGroupHyper) -> Vec<ParamGroup> {
    let sets = [("head", h.head_lr, h.head_weight_decay), ("encoder", h.encoder_lr, h.encoder_weight_decay)];
    split_param_groups(params, sets, |name| name.contains(GLINER_ENCODER_MARKER))
}

/// Two parameter sets (`sets[1]` holds the names `in_second` accepts), each
/// cut into decayed and not ([`is_decayed`]): the groups `first/decay`,
/// `first/no_decay` (wd 0), `second/decay`, `second/no_decay` (wd 0), from
/// each set's (name, learning rate, weight decay).
pub fn split_param_groups(params: &ParamStore, sets: [(&str, f64, f64); 2], in_second: impl Fn(&str) -> bool) -> Vec<ParamGroup> {
    let mut groups: Vec<ParamGroup> = sets
        .iter()
        .flat_map(|&(set, lr, wd)| {
            [
                ParamGroup { name: format!("{set}/decay"), lr, weight_decay: wd, params: Vec::new() },
                ParamGroup { name: format!("{set}/no_decay"), lr, weight_decay: 0.0, params: Vec::new() },
            ]
        })
        .collect();
    for (name, _) in params.iter() {
        let idx = 2 * usize::from(in_second(name)) + usize::from(!is_decayed(name));
        groups[idx].params.push(name.clone());
    }
    groups
}

/// Layer-wise learning-rate decay (ELECTRA, Clark et al. 2020; timm's
/// `layer_decay`): each encoder group (`encoder/…`) is cut by depth, and a
/// parameter `k` depths below the top keeps `decay^k` of its group's rate.
/// Depths: the embeddings 0, transformer layer `i` (`….layer.i.…`) i + 1, the
/// rest of the encoder L + 1 (L layers: the projection into GLiNER's width,
/// DeBERTa's shared relative embeddings and their LayerNorm, used by every
/// layer). So the top layer trains at `decay`·lr, the embeddings at
/// `decay^(L+1)`·lr, the head keeps its own. `decay` = 1 returns the groups
/// as they are (GLiNER's four).
pub fn layer_decayed_groups(groups: Vec<ParamGroup>, decay: f64) -> Vec<ParamGroup> {
    if decay == 1.0 {
        return groups;
    }
    let is_encoder = |g: &ParamGroup| g.name.starts_with("encoder/");
    let layers = groups.iter().filter(|g| is_encoder(g)).flat_map(|g| g.params.iter()).filter_map(|n| layer_index(n)).max().map_or(0, |i| i + 1);
    let depth = |name: &str| match layer_index(name) {
        Some(i) => i + 1,
        None if name.split('.').any(|s| s == "embeddings") => 0,
        None => layers + 1,
    };
    let mut out = Vec::new();
    for g in groups {
        if !is_encoder(&g) {
            out.push(g);
            continue;
        }
        let mut by_depth: Vec<Vec<String>> = vec![Vec::new(); layers + 2];
        for p in g.params {
            by_depth[depth(&p)].push(p);
        }
        for (d, params) in by_depth.into_iter().enumerate().rev().filter(|(_, p)| !p.is_empty()) {
            let lr = g.lr * decay.powi((layers + 1 - d) as i32);
            out.push(ParamGroup { name: format!("{}/depth{d}", g.name), lr, weight_decay: g.weight_decay, params });
        }
    }
    out
}

/// `i` of a transformer layer's parameter (`….layer.i.…`).
fn layer_index(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts.windows(2).find(|w| w[0] == "layer").and_then(|w| w[1].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kogner_tensor::{DType, Tensor};

    #[test]
    fn decay_rule_on_names() {
        assert!(is_decayed("token_rep_layer.bert_layer.model.encoder.rel_embeddings.weight"));
        assert!(is_decayed("rnn.lstm.weight_ih_l0"));
        assert!(!is_decayed("rnn.lstm.bias_hh_l0_reverse"));
        assert!(!is_decayed("encoder.layer.0.output.LayerNorm.weight"));
        assert!(!is_decayed("encoder.layer_norm.weight"));
    }

    #[test]
    fn four_groups_in_gliner_order() {
        let mut ps = ParamStore::new();
        for n in ["token_rep_layer.projection.weight", "token_rep_layer.projection.bias", "prompt_rep_layer.0.weight", "rnn.lstm.bias_ih_l0"] {
            ps.insert(n, Tensor::zeros(&[1], DType::F32)).unwrap();
        }
        let h = GlinerGroupHyper { encoder_lr: 1e-5, encoder_weight_decay: 0.1, head_lr: 5e-5, head_weight_decay: 0.2 };
        let g = gliner_param_groups(&ps, &h);
        let got: Vec<(f64, f64, Vec<String>)> = g.into_iter().map(|g| (g.lr, g.weight_decay, g.params)).collect();
        assert_eq!(
            got,
            vec![
                (5e-5, 0.2, vec!["prompt_rep_layer.0.weight".to_string()]),
                (5e-5, 0.0, vec!["rnn.lstm.bias_ih_l0".to_string()]),
                (1e-5, 0.1, vec!["token_rep_layer.projection.weight".to_string()]),
                (1e-5, 0.0, vec!["token_rep_layer.projection.bias".to_string()]),
            ]
        );
    }

    #[test]
    fn layer_decay_scales_by_depth_below_the_top() {
        let mut ps = ParamStore::new();
        let enc = "token_rep_layer.bert_layer.model";
        for n in [
            format!("{enc}.embeddings.word_embeddings.weight"),
            format!("{enc}.embeddings.LayerNorm.weight"),
            format!("{enc}.encoder.layer.0.attention.self.query.weight"),
            format!("{enc}.encoder.layer.1.output.dense.bias"),
            format!("{enc}.encoder.rel_embeddings.weight"),
            "token_rep_layer.projection.weight".to_string(),
            "rnn.lstm.weight_ih_l0".to_string(),
        ] {
            ps.insert(&n, Tensor::zeros(&[1], DType::F32)).unwrap();
        }
        let h = GlinerGroupHyper { encoder_lr: 1.0, encoder_weight_decay: 0.1, head_lr: 5.0, head_weight_decay: 0.2 };
        let plain = gliner_param_groups(&ps, &h);
        assert_eq!(layer_decayed_groups(plain.clone(), 1.0), plain);

        let lr_of = |groups: &[ParamGroup], name: &str| -> (f64, f64) {
            let g = groups.iter().find(|g| g.params.iter().any(|p| p == name)).unwrap();
            (g.lr, g.weight_decay)
        };
        let decayed = layer_decayed_groups(plain, 0.5);
        // Two layers: the rest of the encoder is depth 3 (factor 1), layer 1 depth 2 (½),
        // layer 0 depth 1 (¼), the embeddings depth 0 (⅛); the head is untouched.
        for (name, want) in [
            ("token_rep_layer.projection.weight".to_string(), (1.0, 0.1)),
            (format!("{enc}.encoder.rel_embeddings.weight"), (1.0, 0.1)),
            (format!("{enc}.encoder.layer.1.output.dense.bias"), (0.5, 0.0)),
            (format!("{enc}.encoder.layer.0.attention.self.query.weight"), (0.25, 0.1)),
            (format!("{enc}.embeddings.word_embeddings.weight"), (0.125, 0.1)),
            (format!("{enc}.embeddings.LayerNorm.weight"), (0.125, 0.0)),
            ("rnn.lstm.weight_ih_l0".to_string(), (5.0, 0.2)),
        ] {
            assert_eq!(lr_of(&decayed, &name), want, "{name}");
        }
        let total: usize = decayed.iter().map(|g| g.params.len()).sum();
        assert_eq!(total, 7);
    }
}
