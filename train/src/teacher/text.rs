//! Z for every KG node, batched, cached by KG content.
