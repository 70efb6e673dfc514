//! GLiNER: span-based NER with a label prompt (SPEC §2–§4).

pub mod decode;
pub mod head;
pub mod init;
pub mod long_text;
pub mod model;
pub mod pipeline;
pub mod processor;
pub mod same_model;
pub mod word_shape;
pub mod words;
