//! `pytorch_model.bin` reading: the deberta-tiny fixture against its
//! safetensors twin, and hand-written pickles (views, dtypes, malicious and
//! broken inputs).

use std::io::Write;
use std::path::Path;

use half::{bf16, f16};
use kogner_tensor::pytorch_io::PytorchFile;
use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::{DType, Tensor};
use zip::write::SimpleFileOptions;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/gliner")
}

// ------------------------------------------------------------------ fixture

#[test]
fn deberta_tiny_bin_equals_safetensors_bit_for_bit() {
    let bin_path = fixtures().join("deberta-tiny-bin/pytorch_model.bin");
    let st_path = fixtures().join("deberta-tiny/model.safetensors");
    let bin = PytorchFile::open(&bin_path).unwrap();
    let st = SafeTensorsFile::open(&st_path).unwrap();
    assert_eq!(bin.names(), st.names());
    assert_eq!(bin.len(), 64);
    for name in st.names() {
        let a = bin.get(&name).unwrap();
        let b = st.get(&name).unwrap();
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert_eq!(bin.shape_of(&name).unwrap(), b.shape(), "{name}");
        assert_eq!(a.dtype(), DType::F32, "{name}");
        assert_eq!(a.dtype(), b.dtype(), "{name}");
        let a: Vec<u32> = a.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = b.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
        assert!(a == b, "tensor {name} differs");
    }
    let shape = st.shape_of("prompt_rep_layer.0.weight").unwrap();
    let t = bin.get_as("prompt_rep_layer.0.weight", &shape, DType::F64).unwrap();
    assert_eq!(t.dtype(), DType::F64);
    let e = bin.get_as("prompt_rep_layer.0.weight", &[1, 2], DType::F32).unwrap_err().to_string();
    assert!(e.contains("pytorch_model.bin") && e.contains("has shape") && e.contains("expected [1, 2]"), "{e}");
    let e = bin.get("nope").unwrap_err().to_string();
    assert!(e.contains("missing tensor `nope`"), "{e}");
    assert_eq!(bin.load_all().unwrap().len(), 64);
}

// ------------------------------------------------------------------ a tiny pickle writer

/// Emits pickle opcodes by hand (protocol 2, as torch.save writes them).
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn new() -> Self {
        P(vec![0x80, 2])
    }
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn mark(&mut self) -> &mut Self {
        self.op(b'(')
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c').raw(format!("{module}\n{name}\n").as_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        if s.len() < 256 && s.len().is_multiple_of(2) {
            self.op(0x8c).op(s.len() as u8).raw(s.as_bytes())
        } else {
            self.op(b'X').raw(&(s.len() as u32).to_le_bytes()).raw(s.as_bytes())
        }
    }
    fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.op(b'K').op(v as u8)
        } else if (0..65536).contains(&v) {
            self.op(b'M').raw(&(v as u16).to_le_bytes())
        } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
            self.op(b'J').raw(&(v as i32).to_le_bytes())
        } else {
            self.op(0x8a).op(8).raw(&v.to_le_bytes())
        }
    }
    fn put(&mut self, i: u8) -> &mut Self {
        self.op(b'q').op(i)
    }
    fn get(&mut self, i: u8) -> &mut Self {
        self.op(b'h').op(i)
    }
    fn tuple_of(&mut self, xs: &[i64]) -> &mut Self {
        match xs.len() {
            0 => self.op(b')'),
            1 => self.int(xs[0]).op(0x85),
            2 => self.int(xs[0]).int(xs[1]).op(0x86),
            3 => self.int(xs[0]).int(xs[1]).int(xs[2]).op(0x87),
            _ => {
                self.mark();
                for &x in xs {
                    self.int(x);
                }
                self.op(b't')
            }
        }
    }
    /// `_rebuild_tensor_v2(persistent(('storage', torch.<stype>, key, 'cpu', numel)), offset, size, stride, False, OrderedDict())`
    fn tensor(&mut self, stype: &str, key: &str, numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").mark();
        self.mark().str("storage").global("torch", stype).str(key).str("cpu").int(numel).op(b't').op(b'Q');
        self.int(offset).tuple_of(size).tuple_of(stride).op(0x89);
        self.global("collections", "OrderedDict").op(b')').op(b'R');
        self.op(b't').op(b'R')
    }
    fn stop(&mut self) -> Vec<u8> {
        self.op(b'.');
        std::mem::take(&mut self.0)
    }
}

/// A torch.save-style zip: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`.
fn zip_archive(pkl: &[u8], byteorder: Option<&str>, storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("archive/data.pkl", opts).unwrap();
    w.write_all(pkl).unwrap();
    if let Some(b) = byteorder {
        w.start_file("archive/byteorder", opts).unwrap();
        w.write_all(b.as_bytes()).unwrap();
    }
    for (k, bytes) in storages {
        w.start_file(format!("archive/data/{k}"), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.start_file("archive/version", opts).unwrap();
    w.write_all(b"3\n").unwrap();
    w.finish().unwrap().into_inner()
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

fn open(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> kogner_tensor::Result<PytorchFile> {
    PytorchFile::from_bytes("test/pytorch_model.bin", zip_archive(pkl, Some("little"), storages))
}

fn err(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> String {
    let e = open(pkl, storages).expect_err("must be refused").to_string();
    assert!(e.starts_with("test/pytorch_model.bin: "), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

/// A valid state dict exercising views, dtypes, memo sharing, parameters
/// and the OrderedDict `_metadata` BUILD.
fn rich_state_dict() -> (Vec<u8>, Vec<(&'static str, Vec<u8>)>) {
    let mut p = P::new();
    p.global("collections", "OrderedDict").put(0).op(b')').op(b'R').put(1).mark();
    // "t": storage 0 is 0..12 as f32; the tensor is its [3, 2] slice at offset 1
    // transposed, i.e. size (3, 2), stride (1, 3): [[1, 4], [2, 5], [3, 6]].
    p.str("t").tensor("FloatStorage", "0", 12, 1, &[3, 2], &[1, 3]).put(2);
    // "c": contiguous [2, 3] from offset 6 of the same storage.
    p.str("c").tensor("FloatStorage", "0", 12, 6, &[2, 3], &[3, 1]);
    // "tied": the memoised tensor "t" again.
    p.str("tied").get(2);
    // "d": f64, "h": f16, "b": bf16 (as Parameters via _rebuild_parameter).
    p.str("d").tensor("DoubleStorage", "1", 3, 0, &[3], &[1]);
    p.str("h").global("torch._utils", "_rebuild_parameter").mark();
    p.tensor("HalfStorage", "2", 2, 0, &[2], &[1]).op(0x88).global("collections", "OrderedDict").op(b')').op(b'R').op(b't').op(b'R');
    p.str("b").tensor("BFloat16Storage", "3", 2, 0, &[2], &[1]);
    // integers and masks
    p.str("l").tensor("LongStorage", "4", 2, 0, &[2], &[1]);
    p.str("i").tensor("IntStorage", "5", 3, 1, &[2], &[1]);
    p.str("u").tensor("ByteStorage", "6", 3, 0, &[3], &[1]);
    p.str("m").tensor("BoolStorage", "7", 2, 0, &[2, 1], &[1, 1]);
    // a 0-d scalar (element 5 of storage 0) and an empty tensor
    p.str("s").tensor("FloatStorage", "0", 12, 5, &[], &[]);
    p.str("e").tensor("FloatStorage", "0", 12, 0, &[0, 4], &[4, 1]);
    // an expanded view (stride 0)
    p.str("x").tensor("FloatStorage", "0", 12, 2, &[2, 2], &[0, 1]);
    p.op(b'u');
    // _metadata = OrderedDict({'': {'version': 1}}), set through BUILD
    p.op(b'}').mark().str("_metadata").global("collections", "OrderedDict").op(b')').op(b'R').mark();
    p.str("").op(b'}').str("version").int(1).op(b's').op(b'u').op(b'u').op(b'b');
    let pkl = p.stop();
    let storages = vec![
        ("0", le(&(0..12).map(|i| i as f32).collect::<Vec<_>>(), f32::to_le_bytes)),
        ("1", le(&[1.5f64, -2.25, 1e300], f64::to_le_bytes)),
        ("2", le(&[f16::from_f32(0.5), f16::from_f32(-3.0)], |x| x.to_bits().to_le_bytes())),
        ("3", le(&[bf16::from_f32(2.0), bf16::from_f32(-0.125)], |x| x.to_bits().to_le_bytes())),
        ("4", le(&[-7i64, 1 << 40], i64::to_le_bytes)),
        ("5", le(&[9i32, -3, 4], i32::to_le_bytes)),
        ("6", vec![0u8, 200, 255]),
        ("7", vec![1u8, 0]),
    ];
    (pkl, storages)
}

#[test]
fn hand_written_state_dict_views_dtypes_and_sharing() {
    let (pkl, storages) = rich_state_dict();
    let f = open(&pkl, &storages).unwrap();
    assert_eq!(f.names_in_file_order(), ["t", "c", "tied", "d", "h", "b", "l", "i", "u", "m", "s", "e", "x"]);
    let f32s = |n: &str| f.get(n).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(f.shape_of("t").unwrap(), [3, 2]);
    assert_eq!(f32s("t"), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert!(f.get("t").unwrap().is_contiguous());
    assert_eq!(f32s("tied"), f32s("t"));
    assert_eq!(f32s("c"), [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    assert_eq!(f.get("d").unwrap().to_vec::<f64>().unwrap(), [1.5, -2.25, 1e300]);
    assert_eq!(f.dtype_of("h"), Some(DType::F16));
    assert_eq!(f.get_as("h", &[2], DType::F32).unwrap().to_vec::<f32>().unwrap(), [0.5, -3.0]);
    assert_eq!(f.get("b").unwrap().to_vec::<bf16>().unwrap(), [bf16::from_f32(2.0), bf16::from_f32(-0.125)]);
    assert_eq!(f.get("l").unwrap().to_vec::<i64>().unwrap(), [-7, 1 << 40]);
    assert_eq!(f.get("i").unwrap().to_vec::<i64>().unwrap(), [-3, 4]);
    assert_eq!(f.get("u").unwrap().to_vec::<u8>().unwrap(), [0, 200, 255]);
    assert_eq!(f.get("m").unwrap().to_vec::<u8>().unwrap(), [1, 0]);
    assert_eq!(f.shape_of("m").unwrap(), [2, 1]);
    let s = f.get("s").unwrap();
    assert_eq!((s.shape().to_vec(), s.to_vec::<f32>().unwrap()), (vec![], vec![5.0]));
    let e = f.get("e").unwrap();
    assert_eq!((e.shape().to_vec(), e.numel()), (vec![0, 4], 0));
    assert_eq!(f32s("x"), [2.0, 3.0, 2.0, 3.0]);
    let err = f.get_as("l", &[2], DType::F32).unwrap_err().to_string();
    assert!(err.contains("dtype i64, expected f32"), "{err}");

    // The same through a file on disk.
    let dir = std::env::temp_dir().join(format!("kogner-pt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pytorch_model.bin");
    std::fs::write(&path, zip_archive(&pkl, None, &storages)).unwrap();
    let g = PytorchFile::open(&path).unwrap();
    assert_eq!(g.get("t").unwrap().to_vec::<f32>().unwrap(), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn big_endian_archives_are_byte_swapped() {
    let mut p = P::new();
    p.op(b'}').mark().str("w").tensor("FloatStorage", "0", 2, 0, &[2], &[1]);
    p.str("l").tensor("LongStorage", "1", 1, 0, &[1], &[1]).op(b'u');
    let pkl = p.stop();
    let bytes = zip_archive(
        &pkl,
        Some("big"),
        &[("0", le(&[1.25f32, -8.0], f32::to_be_bytes)), ("1", le(&[-2i64], i64::to_be_bytes))],
    );
    let f = PytorchFile::from_bytes("be.bin", bytes).unwrap();
    assert_eq!(f.get("w").unwrap().to_vec::<f32>().unwrap(), [1.25, -8.0]);
    assert_eq!(f.get("l").unwrap().to_vec::<i64>().unwrap(), [-2]);
    let e = PytorchFile::from_bytes("x.bin", zip_archive(&pkl, Some("middle"), &[])).unwrap_err().to_string();
    assert!(e.contains("byteorder says `middle`"), "{e}");
}

#[test]
fn parameters_rebuilt_from_type_v2_and_stack_global() {
    // torch._tensor._rebuild_from_type_v2(_rebuild_parameter, Parameter, (tensor, True, OrderedDict()), {})
    let mut p = P::new();
    p.op(b'}').mark().str("w");
    p.global("torch._tensor", "_rebuild_from_type_v2").mark();
    p.global("torch._utils", "_rebuild_parameter").global("torch.nn.parameter", "Parameter").mark();
    p.tensor("FloatStorage", "0", 2, 0, &[2], &[1]).op(0x88).global("collections", "OrderedDict").op(b')').op(b'R').op(b't');
    p.op(b'}').op(b't').op(b'R');
    // protocol-4 style: STACK_GLOBAL + MEMOIZE
    p.str("v").str("torch._utils").str("_rebuild_tensor_v2").op(0x93).op(0x94).mark();
    p.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(2).op(b't').op(b'Q');
    p.int(1).tuple_of(&[1]).tuple_of(&[1]).op(0x89).op(b'N').op(b't').op(b'R');
    p.op(b'u');
    let pkl = p.stop();
    let f = open(&pkl, &[("0", le(&[3.0f32, 4.0], f32::to_le_bytes))]).unwrap();
    assert_eq!(f.get("w").unwrap().to_vec::<f32>().unwrap(), [3.0, 4.0]);
    assert_eq!(f.get("v").unwrap().to_vec::<f32>().unwrap(), [4.0]);
}

// ------------------------------------------------------------------ refusals

#[test]
fn refuses_os_system_global() {
    // The classic: os.system('echo pwned') through GLOBAL + REDUCE.
    let mut p = P::new();
    p.global("os", "system").str("echo pwned").op(0x85).op(b'R');
    let e = err(&p.stop(), &[]);
    assert!(e.contains("refusing pickle global `os.system`: only plain tensors are supported"), "{e}");
    assert!(e.contains("archive/data.pkl"), "{e}");

    // Hidden inside a state dict value, and through STACK_GLOBAL.
    let mut p = P::new();
    p.op(b'}').mark().str("w").str("builtins").str("eval").op(0x93).str("1+1").op(0x85).op(b'R').op(b'u');
    let e = err(&p.stop(), &[]);
    assert!(e.contains("refusing pickle global `builtins.eval`"), "{e}");

    // A look-alike of an allowed module.
    let mut p = P::new();
    p.global("torch", "load").op(b'.');
    let e = err(&p.0, &[]);
    assert!(e.contains("refusing pickle global `torch.load`"), "{e}");
}

#[test]
fn refuses_unsupported_opcodes_and_shapes() {
    // INST (protocol 0 object construction)
    let mut p = P::new();
    p.mark().raw(b"ios\nsystem\n");
    let e = err(&p.stop(), &[]);
    assert!(e.contains("unsupported pickle opcode 0x69 (INST)"), "{e}");
    // NEWOBJ
    let mut p = P::new();
    p.global("collections", "OrderedDict").op(b')').op(0x81);
    let e = err(&p.stop(), &[]);
    assert!(e.contains("NEWOBJ"), "{e}");
    // Calling a storage type
    let mut p = P::new();
    p.global("torch", "FloatStorage").op(b')').op(b'R');
    let e = err(&p.stop(), &[]);
    assert!(e.contains("is not supported"), "{e}");
    // Top level is not a dict
    let mut p = P::new();
    p.op(b']');
    let e = err(&p.stop(), &[]);
    assert!(e.contains("pickled object is a list, expected a dict"), "{e}");
    // A value that is not a tensor
    let mut p = P::new();
    p.op(b'}').str("epoch").int(3).op(b's');
    let e = err(&p.stop(), &[]);
    assert!(e.contains("state dict entry `epoch` is a int, expected a tensor"), "{e}");
    // BUILD on something other than an OrderedDict
    let mut p = P::new();
    p.op(b']').op(b'}').op(b'b');
    let e = err(&p.stop(), &[]);
    assert!(e.contains("BUILD on a list"), "{e}");
    // Negative sizes, rank mismatch, a view beyond its storage
    for (size, stride, offset, want) in [
        (vec![-1i64], vec![1i64], 0i64, "negative or non-int"),
        (vec![2, 2], vec![1], 0, "differ in rank"),
        (vec![2, 3], vec![3, 1], 1, "reaches element 6 of storage `0` of 6 elements"),
        (vec![1 << 40, 1 << 40], vec![1, 1], 0, "overflows"),
    ] {
        let mut p = P::new();
        p.op(b'}').str("w").tensor("FloatStorage", "0", 6, offset, &size, &stride).op(b's');
        let e = err(&p.stop(), &[("0", vec![0; 24])]);
        assert!(e.contains(want), "{want}: {e}");
    }
    // Deep nesting is refused before it can exhaust the stack.
    let mut p = P::new();
    p.op(b')');
    for _ in 0..200_000 {
        p.op(0x85);
    }
    let e = err(&p.stop(), &[]);
    assert!(e.contains("nested deeper than"), "{e}");
}

#[test]
fn missing_or_short_storage_entries() {
    let mut p = P::new();
    p.op(b'}').mark().str("a").tensor("FloatStorage", "0", 2, 0, &[2], &[1]);
    p.str("b.weight").tensor("FloatStorage", "1", 4, 0, &[4], &[1]).op(b'u');
    let pkl = p.stop();
    let e = err(&pkl, &[("0", vec![0; 8])]);
    assert!(e.contains("tensor `b.weight`: storage entry `archive/data/1` is missing"), "{e}");
    let e = err(&pkl, &[("0", vec![0; 8]), ("1", vec![0; 15])]);
    assert!(e.contains("tensor `b.weight`: storage entry `archive/data/1` has 15 bytes, expected 4 elements of 4 bytes"), "{e}");
    assert!(open(&pkl, &[("0", vec![0; 8]), ("1", vec![0; 16])]).is_ok());
}

#[test]
fn truncated_and_corrupted_pickles_never_panic() {
    let (pkl, storages) = rich_state_dict();
    assert!(open(&pkl, &storages).is_ok());
    // Every proper prefix is an error (most end without STOP).
    for n in 0..pkl.len() {
        let e = err(&pkl[..n], &storages);
        assert!(e.contains("archive/data.pkl"), "{e}");
        if n == pkl.len() - 1 {
            assert!(e.contains("without STOP"), "{e}");
        }
    }
    let e = err(&pkl[..40], &storages);
    assert!(e.contains("truncated pickle"), "{e}");
    // Single-byte corruptions: any outcome but a panic.
    let mut state = 0x2545F4914F6CDD1Du64;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bad = pkl.clone();
        let i = (state % bad.len() as u64) as usize;
        bad[i] = (state >> 32) as u8;
        if let Ok(f) = open(&bad, &storages) {
            for n in f.names() {
                let _ = f.get(&n);
            }
        }
    }
}

#[test]
fn not_a_zip_legacy_and_missing_pickle() {
    let e = PytorchFile::from_bytes("model.bin", b"hello, this is not a zip".to_vec()).unwrap_err().to_string();
    assert_eq!(e, "model.bin: not a zip archive (expected a torch.save zip file such as pytorch_model.bin)");
    let e = PytorchFile::from_bytes("old.bin", vec![0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc]).unwrap_err().to_string();
    assert!(e.contains("legacy (pre-1.6, non-zip) torch.save format"), "{e}");
    let e = PytorchFile::from_bytes("empty.bin", Vec::new()).unwrap_err().to_string();
    assert!(e.contains("not a zip archive"), "{e}");
    // A zip without data.pkl
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("readme.txt", SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)).unwrap();
    w.write_all(b"hi").unwrap();
    let e = PytorchFile::from_bytes("z.bin", w.finish().unwrap().into_inner()).unwrap_err().to_string();
    assert!(e.contains("no `<name>/data.pkl` entry"), "{e}");
    // A truncated zip
    let (pkl, storages) = rich_state_dict();
    let z = zip_archive(&pkl, None, &storages);
    let e = PytorchFile::from_bytes("cut.bin", z[..z.len() / 2].to_vec()).unwrap_err().to_string();
    assert!(e.starts_with("cut.bin: "), "{e}");
    let e = PytorchFile::open("/nonexistent/pytorch_model.bin").unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/pytorch_model.bin: "), "{e}");
    let _ = Tensor::scalar(0f32);
}
