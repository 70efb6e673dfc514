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
}
