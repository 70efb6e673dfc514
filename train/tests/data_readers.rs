//! Corpus readers against the counts stated in `shared/data/ner/*/README.md`,
//! conversion to GLiNER examples (no mention lost), and malformed input.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use kogner_train::data::brat::read_brat_dir;
use kogner_train::data::gliner_json::read_gliner_json;
use kogner_train::data::iob::read_iob;
use kogner_train::data::pubtator::{normalise_ids, read_pubtator};
use kogner_train::student::{read_corpus, Format};
use kogner_train::data::{
    document_words, exclude_ids, join_documents, read_id_list, to_examples, ConvertOptions, Document, LabelMap, Mention,
    UnmappedReason,
};

fn ner(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/ner")
        .join(rel);
    assert!(p.exists(), "missing shared corpus file {}", p.display());
    p
}

fn by_label(docs: &[Document]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in docs {
        for x in &d.mentions {
            *m.entry(x.label.clone()).or_insert(0) += 1;
        }
    }
    m
}

fn n_mentions(docs: &[Document]) -> usize {
    docs.iter().map(|d| d.mentions.len()).sum()
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn distinct_ids(docs: &[Document]) -> (usize, usize, usize) {
    let ids: BTreeSet<&String> = docs
        .iter()
        .flat_map(|d| &d.mentions)
        .flat_map(|m| &m.concept_ids)
        .collect();
    let d = ids.iter().filter(|i| i.starts_with("MESH:D")).count();
    let c = ids.iter().filter(|i| i.starts_with("MESH:C")).count();
    let o = ids.iter().filter(|i| i.starts_with("OMIM:")).count();
    assert_eq!(d + c + o, ids.len(), "ids of unexpected form");
    (d, c, o)
}

#[test]
fn ncbi_pubtator_counts() {
    // (file, blocks, mentions, Specific, Class, Modifier, Composite, distinct D/C/OMIM)
    let rows = [
        (
            "NCBItrainset_corpus.txt",
            593,
            5145,
            2972,
            769,
            1289,
            115,
            (510, 68, 69),
        ),
        (
            "NCBIdevelopset_corpus.txt",
            100,
            787,
            412,
            126,
            214,
            35,
            (136, 13, 21),
        ),
        (
            "NCBItestset_corpus.txt",
            100,
            960,
            555,
            121,
            264,
            20,
            (159, 20, 21),
        ),
    ];
    for (f, nd, nm, s, c, m, comp, ids) in rows {
        let docs = read_pubtator(&ner(&format!("ncbi-disease/pubtator/{f}"))).unwrap();
        assert_eq!(docs.len(), nd, "{f}");
        assert_eq!(n_mentions(&docs), nm, "{f}");
        let want = counts(&[
            ("SpecificDisease", s),
            ("DiseaseClass", c),
            ("Modifier", m),
            ("CompositeMention", comp),
        ]);
        assert_eq!(by_label(&docs), want, "{f}");
        // README: every mention carries at least one concept id.
        assert!(
            docs.iter()
                .flat_map(|d| &d.mentions)
                .all(|m| !m.concept_ids.is_empty()),
            "{f}"
        );
        assert_eq!(distinct_ids(&docs), ids, "{f}");
    }
    let train = read_pubtator(&ner("ncbi-disease/pubtator/NCBItrainset_corpus.txt")).unwrap();
    let distinct: HashSet<&str> = train.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(distinct.len(), 592);
    // The README's example document: title + " " + abstract offsets.
    let d = train.iter().find(|d| d.id == "10192393").unwrap();
    let m = &d.mentions[0];
    assert_eq!(d.mention_text(m), Some("skin tumour"));
    assert_eq!((m.start, m.end), (15, 26));
    assert_eq!(m.concept_ids, vec!["MESH:D012878".to_string()]);
}

#[test]
fn bc5cdr_pubtator_counts() {
    // (file, mentions, Chemical, Disease, with id Chemical, with id Disease, distinct D, C)
    let rows = [
        (
            "CDR_TrainingSet.PubTator.txt",
            9385,
            5203,
            4182,
            5159,
            4150,
            1171,
            157,
        ),
        (
            "CDR_DevelopmentSet.PubTator.txt",
            9591,
            5347,
            4244,
            5304,
            4228,
            1111,
            152,
        ),
        (
            "CDR_TestSet.PubTator.txt",
            9809,
            5385,
            4424,
            5355,
            4363,
            1154,
            161,
        ),
    ];
    for (f, nm, ch, di, ich, idi, dd, dc) in rows {
        let docs = read_pubtator(&ner(&format!("bc5cdr/pubtator/{f}"))).unwrap();
        assert_eq!(docs.len(), 500, "{f}");
        assert_eq!(n_mentions(&docs), nm, "{f}");
        assert_eq!(
            by_label(&docs),
            counts(&[("Chemical", ch), ("Disease", di)]),
            "{f}"
        );
        let with_id = |label: &str| {
            docs.iter()
                .flat_map(|d| &d.mentions)
                .filter(|m| m.label == label && !m.concept_ids.is_empty())
                .count()
        };
        assert_eq!((with_id("Chemical"), with_id("Disease")), (ich, idi), "{f}");
        assert_eq!(distinct_ids(&docs), (dd, dc, 0), "{f}");
    }
}

#[test]
fn concept_id_normalisation() {
    let v = |s: &str| normalise_ids(s).unwrap();
    assert_eq!(v("D009270"), ["MESH:D009270"]);
    assert_eq!(v("-1"), Vec::<String>::new());
    assert_eq!(v("D002544|-1"), ["MESH:D002544"]);
    assert_eq!(v("D020279+D035583"), ["MESH:D020279", "MESH:D035583"]);
    assert_eq!(
        v(" OMIM:607507|MESH:C537106 "),
        ["OMIM:607507", "MESH:C537106"]
    );
    assert_eq!(v("D003110|D003110"), ["MESH:D003110"]);
    assert!(normalise_ids("HP:0001250").is_err());
    assert!(normalise_ids("D12a").is_err());
}

#[test]
fn iob_counts() {
    // (file, documents, sentences, tokens, {type: entities})
    type Row<'a> = (&'a str, usize, usize, usize, Vec<(&'a str, usize)>);
    let rows: Vec<Row> = vec![
        (
            "ncbi-disease/iob/train.tsv",
            5424,
            5424,
            135_701,
            vec![("Disease", 5134)],
        ),
        (
            "ncbi-disease/iob/devel.tsv",
            923,
            923,
            23_969,
            vec![("Disease", 787)],
        ),
        (
            "ncbi-disease/iob/test.tsv",
            940,
            940,
            24_497,
            vec![("Disease", 960)],
        ),
        (
            "bc5cdr/iob/train.tsv",
            4560,
            4560,
            118_170,
            vec![("Chemical", 5203), ("Disease", 4182)],
        ),
        (
            "bc5cdr/iob/devel.tsv",
            4581,
            4581,
            117_453,
            vec![("Chemical", 5347), ("Disease", 4246)],
        ),
        (
            "bc5cdr/iob/test.tsv",
            4797,
            4797,
            124_750,
            vec![("Chemical", 5385), ("Disease", 4424)],
        ),
        (
            "jnlpba/iob/devel.tsv",
            200,
            1739,
            47_461,
            vec![
                ("protein", 2466),
                ("DNA", 1052),
                ("cell_type", 526),
                ("cell_line", 400),
                ("RNA", 107),
            ],
        ),
        (
            "jnlpba/iob/test.tsv",
            404,
            3856,
            101_039,
            vec![
                ("protein", 5067),
                ("DNA", 1056),
                ("cell_type", 1921),
                ("cell_line", 500),
                ("RNA", 118),
            ],
        ),
    ];
    for (f, nd, ns, nt, types) in rows {
        let c = read_iob(&ner(f)).unwrap();
        assert_eq!(
            (c.documents.len(), c.sentences, c.tokens),
            (nd, ns, nt),
            "{f}"
        );
        assert_eq!(by_label(&c.documents), counts(&types), "{f}");
        // READMEs: checked IOB2, no I- without B-.
        assert!(c.inside_without_begin.is_empty(), "{f}");
    }
}

#[test]
fn joined_sentences_keep_every_mention_and_its_text() {
    // Offsets are code points: "é" is two bytes.
    let dir = TempDir::new("join");
    let p = dir.write("s.tsv", "Caféine\tB-Chemical\nkills\tO\n.\tO\n\nNo\tO\nliver\tB-Disease\nfailure\tI-Disease\n\n");
    let sentences = read_iob(&p).unwrap().documents;
    let joined = join_documents(sentences.clone(), "s".into());
    assert_eq!(joined.text, "Caféine kills . No liver failure");
    let spans: Vec<(usize, usize, &str)> = joined.mentions.iter().map(|m| (m.start, m.end, joined.mention_text(m).unwrap())).collect();
    assert_eq!(spans, [(0, 7, "Caféine"), (19, 32, "liver failure")]);

    // A whole corpus: read_corpus joins a sentence-level IOB file only when asked.
    let devel = ner("bc5cdr/iob/devel.tsv");
    let (sentences, pre_split) = read_corpus(&devel, Format::Iob, None, false).unwrap();
    assert!(pre_split);
    let (docs, pre_split) = read_corpus(&devel, Format::Iob, None, true).unwrap();
    assert!(!pre_split);
    assert_eq!(docs.len(), 1);
    let texts = |docs: &[Document]| -> Vec<String> {
        docs.iter().flat_map(|d| d.mentions.iter().map(|m| format!("{}|{}", m.label, d.mention_text(m).unwrap()))).collect()
    };
    assert_eq!(texts(&docs), texts(&sentences));
    // Packed into examples of at most 64 words, every mention keeps its words.
    let labels = LabelMap::for_corpus("bc5cdr").unwrap();
    let opts = ConvertOptions { max_len: 64, split_sentences: false, split_at_mentions: true };
    let conv = to_examples(&docs, &labels, &opts).unwrap();
    let per_sentence = to_examples(&sentences, &labels, &opts).unwrap();
    assert_eq!(conv.unmapped.len(), per_sentence.unmapped.len());
    let n_spans = |c: &kogner_train::data::Conversion| c.examples.iter().map(|e| e.spans.len()).sum::<usize>();
    assert_eq!(n_spans(&conv), n_spans(&per_sentence));
    assert!(conv.examples.len() * 3 < per_sentence.examples.len() * 2, "{} examples from {} sentences", conv.examples.len(), per_sentence.examples.len());
    assert!(conv.examples.iter().all(|e| e.words.len() <= 64));
    // An IOB file with -DOCSTART- documents is not joined.
    let (jnlpba, _) = read_corpus(&ner("jnlpba/iob/devel.tsv"), Format::Iob, None, true).unwrap();
    assert_eq!(jnlpba.len(), 200);
}

#[test]
fn iob_offsets_and_orphan_inside() {
    let dir = TempDir::new("iob");
    let p = dir.write(
        "x.tsv",
        "Aa\tB-X\nbb\tI-X\ncc\tO\ndd\tI-X\nee\tI-Y\n\nff\tI-X\n\n",
    );
    let c = read_iob(&p).unwrap();
    assert_eq!((c.documents.len(), c.sentences, c.tokens), (2, 2, 6));
    let d = &c.documents[0];
    assert_eq!(d.text, "Aa bb cc dd ee");
    let spans: Vec<(usize, usize, &str)> = d
        .mentions
        .iter()
        .map(|m| (m.start, m.end, m.label.as_str()))
        .collect();
    assert_eq!(spans, [(0, 5, "X"), (9, 11, "X"), (12, 14, "Y")]);
    assert_eq!(c.documents[1].mentions[0].start, 0);
    assert_eq!(c.inside_without_begin, [4, 5, 7]);
}

#[test]
fn jnlpba_standoff_counts_and_devel_overlap() {
    let train = read_brat_dir(&ner("jnlpba/standoff/train")).unwrap();
    let test = read_brat_dir(&ner("jnlpba/standoff/test")).unwrap();
    assert_eq!((train.len(), n_mentions(&train)), (2000, 51_301));
    assert_eq!((test.len(), n_mentions(&test)), (404, 8662));
    let want_train = counts(&[
        ("protein", 30_269),
        ("DNA", 9533),
        ("cell_type", 6718),
        ("cell_line", 3830),
        ("RNA", 951),
    ]);
    let want_test = counts(&[
        ("protein", 5067),
        ("DNA", 1056),
        ("cell_type", 1921),
        ("cell_line", 500),
        ("RNA", 118),
    ]);
    assert_eq!(by_label(&train), want_train);
    assert_eq!(by_label(&test), want_test);
    let ids: HashSet<String> = read_id_list(&ner("jnlpba/iob/devel-doc-ids-in-standoff-train.txt"))
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(exclude_ids(train, &ids).len(), 1800);
}

/// Every mention of every document comes out exactly once: as a span whose
/// words reproduce its offsets, or as an unmapped mention whose reason holds.
fn check_conversion(
    name: &str,
    docs: &[Document],
    labels: &LabelMap,
    opts: &ConvertOptions,
) -> usize {
    let conv = to_examples(docs, labels, opts).unwrap();
    let mut want: Vec<(String, usize, usize, String, Vec<String>)> = Vec::new();
    for d in docs {
        for m in &d.mentions {
            want.push((
                d.id.clone(),
                m.start,
                m.end,
                labels.label(&m.label).unwrap().to_string(),
                m.concept_ids.clone(),
            ));
        }
    }
    let mut got = Vec::new();
    for ex in &conv.examples {
        assert!(!ex.words.is_empty());
        assert_eq!(ex.spans.len(), ex.span_concepts.len());
        for ((s, e, l), ids) in ex.spans.iter().zip(&ex.span_concepts) {
            assert!(
                s <= e && *e < ex.words.len(),
                "{name}: span outside its example"
            );
            got.push((
                ex.doc_id.clone(),
                ex.words[*s].start,
                ex.words[*e].end,
                l.clone(),
                ids.clone(),
            ));
        }
    }
    // Mapped spans keep their mention's concept ids: each must consume one
    // gold mention with the same offsets, label and ids.
    let mut pool: BTreeMap<&(String, usize, usize, String, Vec<String>), usize> = BTreeMap::new();
    for w in &want {
        *pool.entry(w).or_insert(0) += 1;
    }
    for g in &got {
        let left = pool
            .get_mut(g)
            .unwrap_or_else(|| panic!("{name}: span {g:?} matches no mention"));
        assert!(*left > 0, "{name}: span {g:?} produced twice");
        *left -= 1;
    }
    let spans = got.len();
    let by_id: BTreeMap<&str, &Document> = docs.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut all: Vec<(String, usize, usize, String)> = got
        .iter()
        .map(|(a, b, c, d, _)| (a.clone(), *b, *c, d.clone()))
        .collect();
    for u in &conv.unmapped {
        let words = document_words(by_id[u.doc_id.as_str()], opts);
        match u.reason {
            UnmappedReason::NotAtWordStart => {
                assert!(words.iter().all(|w| w.start != u.start), "{name}: {u:?}")
            }
            UnmappedReason::NotAtWordEnd => {
                assert!(words.iter().all(|w| w.end != u.end), "{name}: {u:?}")
            }
            UnmappedReason::OutOfRange => {
                panic!("{name}: reader let an out-of-range mention through: {u:?}")
            }
        }
        all.push((u.doc_id.clone(), u.start, u.end, u.label.clone()));
    }
    let mut want_keys: Vec<(String, usize, usize, String)> = want
        .iter()
        .map(|(a, b, c, d, _)| (a.clone(), *b, *c, d.clone()))
        .collect();
    want_keys.sort();
    all.sort();
    assert_eq!(all, want_keys, "{name}: mentions lost or duplicated");
    let longest = conv
        .examples
        .iter()
        .map(|e| e.words.len())
        .max()
        .unwrap_or(0);
    assert!(
        longest <= opts.max_len,
        "{name}: example of {longest} words > max_len {}",
        opts.max_len
    );
    println!(
        "{name} (max_len {}, split_sentences {}): docs {} mentions {} -> examples {} spans {} unmapped {}",
        opts.max_len,
        opts.split_sentences,
        docs.len(),
        want.len(),
        conv.examples.len(),
        spans,
        conv.unmapped.len()
    );
    conv.unmapped.len()
}

#[test]
fn conversion_keeps_every_mention() {
    // Expected unmappable counts were measured independently with Python's
    // `re` and GLiNER's pattern `\w+(?:[-_]\w+)*|\S` (mention start not a
    // word start or end not a word end); nearly all sit inside hyphenated
    // words such as "lithium-induced", which GLiNER keeps as one word.
    let sets: Vec<(&str, Vec<Document>, &str, usize)> = vec![
        (
            "ncbi train",
            read_pubtator(&ner("ncbi-disease/pubtator/NCBItrainset_corpus.txt")).unwrap(),
            "ncbi-disease",
            39,
        ),
        (
            "bc5cdr train",
            read_pubtator(&ner("bc5cdr/pubtator/CDR_TrainingSet.PubTator.txt")).unwrap(),
            "bc5cdr",
            690,
        ),
        (
            "jnlpba standoff test",
            read_brat_dir(&ner("jnlpba/standoff/test")).unwrap(),
            "jnlpba",
            250,
        ),
        (
            "jnlpba iob test",
            read_iob(&ner("jnlpba/iob/test.tsv")).unwrap().documents,
            "jnlpba",
            0,
        ),
    ];
    for (name, docs, corpus, unmappable) in &sets {
        let labels = LabelMap::for_corpus(corpus).unwrap();
        let whole = check_conversion(name, docs, &labels, &ConvertOptions::default());
        let sent = check_conversion(
            name,
            docs,
            &labels,
            &ConvertOptions {
                max_len: 384,
                split_sentences: true,
                ..ConvertOptions::default()
            },
        );
        // Small windows force word-window cuts inside sentences.
        let small = check_conversion(
            name,
            docs,
            &labels,
            &ConvertOptions {
                max_len: 24,
                split_sentences: false,
                ..ConvertOptions::default()
            },
        );
        // Words cut at mention boundaries: only mentions that start or end
        // on whitespace could stay unmapped, and these corpora have none.
        let cut = check_conversion(
            name,
            docs,
            &labels,
            &ConvertOptions {
                split_at_mentions: true,
                ..ConvertOptions::default()
            },
        );
        assert_eq!(
            (whole, sent, small, cut),
            (*unmappable, *unmappable, *unmappable, 0),
            "{name}"
        );
    }
}

#[test]
fn long_documents_split_at_sentences_never_inside_mentions() {
    let text = "Dr. Smith has St. Louis encephalitis. 2 patients had it! Why? no split here. End";
    let at = |s: &str| text.find(s).unwrap();
    let mention = |s: &str, label: &str| Mention {
        start: at(s),
        end: at(s) + s.len(),
        label: label.into(),
        concept_ids: vec!["MESH:D1".into()],
    };
    let doc = Document {
        id: "d".into(),
        text: text.into(),
        mentions: vec![
            mention("St. Louis encephalitis", "Disease"),
            mention("Why", "Disease"),
        ],
    };
    let labels = LabelMap::for_corpus("bc5cdr").unwrap();
    let conv = to_examples(
        std::slice::from_ref(&doc),
        &labels,
        &ConvertOptions {
            max_len: 384,
            split_sentences: true,
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    let texts: Vec<String> = conv
        .examples
        .iter()
        .map(|e| {
            e.words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    // "Dr ." + "Smith" is a split (uppercase after "."); "St . Louis" is not (inside the mention);
    // "it !" + "Why"; "?" + "no" is not (lowercase); ". End" is.
    assert_eq!(
        texts,
        [
            "Dr .",
            "Smith has St . Louis encephalitis .",
            "2 patients had it !",
            "Why ? no split here .",
            "End"
        ]
    );
    assert_eq!(conv.examples[1].spans, [(2, 5, "disease".to_string())]);
    assert_eq!(conv.examples[3].spans, [(0, 0, "disease".to_string())]);
    assert_eq!(
        conv.examples[1].span_concepts,
        [vec!["MESH:D1".to_string()]]
    );
    // Without split_sentences and short enough: one example.
    assert_eq!(
        to_examples(
            std::slice::from_ref(&doc),
            &labels,
            &ConvertOptions::default()
        )
        .unwrap()
        .examples
        .len(),
        1
    );
    // Window of 3 words: the 4-word mention cannot fit; its window grows to keep it whole.
    let conv = to_examples(
        &[doc],
        &labels,
        &ConvertOptions {
            max_len: 3,
            split_sentences: false,
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    let lens: Vec<usize> = conv.examples.iter().map(|e| e.words.len()).collect();
    assert_eq!(
        conv.examples.iter().map(|e| e.spans.len()).sum::<usize>(),
        2
    );
    assert!(
        lens.contains(&4) && lens.iter().filter(|&&l| l > 3).count() == 1,
        "{lens:?}"
    );
}

#[test]
fn unmapped_mentions_are_reported() {
    let doc = Document {
        id: "u".into(),
        text: "IL-2 receptor".into(),
        mentions: vec![
            Mention {
                start: 0,
                end: 2,
                label: "protein".into(),
                concept_ids: vec![],
            },
            Mention {
                start: 3,
                end: 13,
                label: "protein".into(),
                concept_ids: vec![],
            },
            Mention {
                start: 0,
                end: 13,
                label: "protein".into(),
                concept_ids: vec![],
            },
            Mention {
                start: 5,
                end: 40,
                label: "protein".into(),
                concept_ids: vec![],
            },
        ],
    };
    let conv = to_examples(
        &[doc],
        &LabelMap::for_corpus("jnlpba").unwrap(),
        &ConvertOptions::default(),
    )
    .unwrap();
    let reasons: Vec<(UnmappedReason, &str)> = conv
        .unmapped
        .iter()
        .map(|u| (u.reason, u.text.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (UnmappedReason::NotAtWordEnd, "IL"),
            (UnmappedReason::NotAtWordStart, "2 receptor"),
            (UnmappedReason::OutOfRange, "")
        ]
    );
    assert_eq!(conv.examples[0].spans, [(0, 1, "protein".to_string())]);
}

#[test]
fn label_maps() {
    let m = LabelMap::parse("cell_type=cell type, DNA = dna").unwrap();
    assert_eq!(m.label("cell_type").unwrap(), "cell type");
    assert_eq!(m.label("DNA").unwrap(), "dna");
    let err = m.label("protein").unwrap_err().to_string();
    assert!(err.contains("\"protein\""), "{err}");
    assert!(LabelMap::parse("a=b,a=c").is_err());
    assert!(LabelMap::parse("nolabel").is_err());
    assert!(LabelMap::parse("").is_err());
    assert!(LabelMap::for_corpus("conll").is_err());
    let j = LabelMap::for_corpus("jnlpba").unwrap();
    assert_eq!(
        j.labels(),
        ["cell line", "cell type", "dna", "protein", "rna"]
    );
    assert_eq!(
        LabelMap::for_corpus("ncbi-disease").unwrap().labels(),
        ["disease"]
    );
    assert_eq!(
        LabelMap::for_corpus("gliner")
            .unwrap()
            .label("anything")
            .unwrap(),
        "anything"
    );
    let doc = Document {
        id: "doc7".into(),
        text: "a b".into(),
        mentions: vec![Mention {
            start: 0,
            end: 1,
            label: "Gene".into(),
            concept_ids: vec![],
        }],
    };
    let err = to_examples(
        &[doc],
        &LabelMap::for_corpus("bc5cdr").unwrap(),
        &ConvertOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("doc7") && err.contains("\"Gene\""), "{err}");
}

#[test]
fn gliner_json_list_and_jsonl() {
    let dir = TempDir::new("gj");
    let rec1 = r#"{"tokenized_text": ["BRCA1", "causes", "breast", "cancer", "."], "ner": [[0, 0, "gene"], [2, 3, "disease"]]}"#;
    let rec2 = r#"{"tokenized_text": ["x"], "ner": []}"#;
    let list = dir.write("a.json", &format!("[\n{rec1},\n{rec2}\n]\n"));
    let lines = dir.write("a.jsonl", &format!("{rec1}\n\n{rec2}\n"));
    for p in [list, lines] {
        let docs = read_gliner_json(&p).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].text, "BRCA1 causes breast cancer .");
        let m = &docs[0].mentions[1];
        assert_eq!((m.start, m.end, m.label.as_str()), (13, 26, "disease"));
        assert_eq!(docs[0].mention_text(m), Some("breast cancer"));
        let conv = to_examples(
            &docs,
            &LabelMap::for_corpus("gliner").unwrap(),
            &ConvertOptions::default(),
        )
        .unwrap();
        assert_eq!(
            conv.examples[0].spans,
            [(0, 0, "gene".to_string()), (2, 3, "disease".to_string())]
        );
        assert!(conv.unmapped.is_empty());
    }
}

#[test]
fn malformed_inputs_name_file_and_line() {
    let dir = TempDir::new("bad");
    let title = "1|t|Aspirin helps.\n1|a|Pain goes.\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "cols.pubtator",
            format!("{title}1\t0\t7\tAspirin\tChemical\n"),
            ":3:",
        ),
        (
            "range.pubtator",
            format!("{title}1\t0\t99\tAspirin\tChemical\tD001241\n"),
            ":3:",
        ),
        (
            "text.pubtator",
            format!("{title}1\t0\t7\tAspirim\tChemical\tD001241\n"),
            ":3:",
        ),
        (
            "id.pubtator",
            format!("\n{title}1\t0\t7\tAspirin\tChemical\tX123\n"),
            ":4:",
        ),
        (
            "pmid.pubtator",
            format!("{title}2\t0\t7\tAspirin\tChemical\tD001241\n"),
            ":3:",
        ),
        (
            "noabs.pubtator",
            "1|t|Aspirin helps.\n\n".to_string(),
            ":1:",
        ),
        (
            "offs.pubtator",
            format!("{title}1\tx\t7\tAspirin\tChemical\tD001241\n"),
            ":3:",
        ),
    ];
    for (name, content, want) in &cases {
        let p = dir.write(name, content);
        let err = read_pubtator(&p).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let iob_cases = [
        ("tag.tsv", "a\tO\nb\tX-Y\n", ":2:"),
        ("cols.tsv", "a\tO\n\nb\tO\tO\n", ":3:"),
        ("empty.tsv", "\tO\n", ":1:"),
    ];
    for (name, content, want) in iob_cases {
        let err = read_iob(&dir.write(name, content)).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let brat = dir.sub("brat");
    brat.write("d1.txt", "Anti-Ro autoantibodies\n");
    let ann = brat.write(
        "d1.ann",
        "T1\tprotein 0 7\tAnti-Ro\nT2\tprotein 0 4;5 7\tAnti Ro\n",
    );
    let err = read_brat_dir(&brat.0).unwrap_err().to_string();
    assert!(
        err.contains("d1.ann:2:") && err.contains("discontinuous"),
        "{err}"
    );
    std::fs::write(
        &ann,
        "T1\tprotein 0 7\tAnti-Ro\n#1\tnote\nT2\tprotein 8 12\tauto\nT3\tprotein 8 13\tautos\n",
    )
    .unwrap();
    let err = read_brat_dir(&brat.0).unwrap_err().to_string();
    assert!(err.contains("d1.ann:4:") && err.contains("autos"), "{err}");
    std::fs::write(&ann, "T1\tprotein 0 70\tAnti-Ro\n").unwrap();
    assert!(read_brat_dir(&brat.0)
        .unwrap_err()
        .to_string()
        .contains("d1.ann:1:"));
    std::fs::remove_file(&ann).unwrap();
    assert!(read_brat_dir(&brat.0)
        .unwrap_err()
        .to_string()
        .contains("d1.ann"));

    let j = dir.write("bad.jsonl", "{\"tokenized_text\": [\"a\"], \"ner\": []}\n{\"tokenized_text\": [\"a\"], \"ner\": [[0, 1, \"x\"]]}\n");
    let err = read_gliner_json(&j).unwrap_err().to_string();
    assert!(
        err.contains("bad.jsonl:2:") && err.contains("outside"),
        "{err}"
    );
    let j = dir.write(
        "bad.json",
        "[\n{\"tokenized_text\": [\"a\"], \"ner\": []},\n{\"tokenized_text\": [\"a\"]}\n]\n",
    );
    let err = read_gliner_json(&j).unwrap_err().to_string();
    assert!(err.contains("bad.json:3:") && err.contains("ner"), "{err}");
    assert!(read_pubtator(&dir.0.join("missing.txt"))
        .unwrap_err()
        .to_string()
        .contains("missing.txt"));
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("kogner-data-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn sub(&self, name: &str) -> TempDir {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
