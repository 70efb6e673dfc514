//! Word shapes: the case and digit pattern of each word, for an optional
//! embedding the GLiNER head adds to the word vectors (`word_shape: true` in
//! gliner_config.json; not part of GLiNER).
//!
//! Why: uncased encoders (all-MiniLM-L6-v2, bert-base-uncased) lower-case
//! their input, so "IL-2", "CAT" or "HeLa" reach the model exactly as "il-2",
//! "cat" and "hela" do — the spelling cues that mark gene, protein and cell
//! line names are gone. The shape class puts them back at the word level
//! (the casing features of pre-BERT taggers). The table starts at zero, so a
//! fresh shape table leaves the model's first forward pass unchanged.

/// Number of shape classes (rows of the embedding table); class 0 is an empty
/// word slot (padding).
pub const WORD_SHAPES: usize = 9;

/// The shape class of one word (1..WORD_SHAPES), from its letters and digits;
/// other characters (hyphens, brackets) are ignored unless the word has
/// nothing else.
///
/// | class | words |
/// |---|---|
/// | 1 | lower case letters (or letters without case): `cells`, `anti-inflammatory` |
/// | 2 | capitalised (only the first letter upper case): `Jurkat`, `T-cell` |
/// | 3 | two or more letters, all upper case: `APC`, `DNA`, `NF-AT` |
/// | 4 | one upper-case letter: `B`, `T` |
/// | 5 | other mixed case: `HeLa`, `mRNA`, `IkappaB` |
/// | 6 | letters and digits: `IL-2`, `U937`, `p53` |
/// | 7 | digits only: `1`, `2004`, `3.5` |
/// | 8 | no letter or digit: `(`, `-`, `%` |
pub fn word_shape(word: &str) -> u8 {
    let (mut letters, mut upper, mut lower, mut digits) = (0usize, 0usize, 0usize, 0usize);
    let mut first_letter_upper = false;
    for ch in word.chars() {
        if ch.is_alphabetic() {
            if letters == 0 {
                first_letter_upper = ch.is_uppercase();
            }
            letters += 1;
            upper += usize::from(ch.is_uppercase());
            lower += usize::from(ch.is_lowercase());
        } else if ch.is_numeric() {
            digits += 1;
        }
    }
    match (letters, digits) {
        (0, 0) => 8,
        (0, _) => 7,
        (_, d) if d > 0 => 6,
        _ if upper == 0 => 1,
        (1, _) => 4,
        _ if lower == 0 => 3,
        _ if first_letter_upper && upper == 1 => 2,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_table() {
        let cases = [
            ("cells", 1),
            ("anti-inflammatory", 1),
            ("Jurkat", 2),
            ("Human", 2),
            ("APC", 3),
            ("NF-AT", 3),
            ("B", 4),
            ("HeLa", 5),
            ("mRNA", 5),
            ("T-cell", 2),
            ("IkappaB", 5),
            ("IL-2", 6),
            ("U937", 6),
            ("p53", 6),
            ("2004", 7),
            ("3.5", 7),
            ("(", 8),
            ("%", 8),
            ("", 8),
            ("b", 1),
            ("Ärzte", 2),
        ];
        for (word, want) in cases {
            assert_eq!(word_shape(word), want, "{word}");
        }
    }

    #[test]
    fn every_class_is_a_table_row_and_zero_is_left_for_padding() {
        for word in ["a", "Ab", "AB", "A", "aB", "a1", "1", "-"] {
            let s = word_shape(word) as usize;
            assert!((1..WORD_SHAPES).contains(&s), "{word} → {s}");
        }
    }
}
