//! PyTorch `pytorch_model.bin` files (the `torch.save` zip format, torch ≥ 1.6)
//! read without Python and without executing pickle code.
//!
//! The archive holds `<prefix>/data.pkl`, a pickle whose object is a dict
//! (usually an `OrderedDict`) name → tensor, and one raw entry
//! `<prefix>/data/<key>` per storage. A tensor is pickled as
//! `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
//! requires_grad, backward_hooks[, metadata])`, its storage as the persistent
//! id `('storage', torch.FloatStorage, key, location, numel)`.
//!
//! The pickle is interpreted by a small stack machine that knows only the
//! opcodes a state dict needs and calls nothing: the handful of allowlisted
//! globals (`collections.OrderedDict`, the torch rebuild functions and
//! storage types) are recognised by name and evaluated by this module. Any
//! other global, or any other opcode, is refused with an error; so are
//! deeply nested or oversized pickles. Tensors are decoded on request from
//! their storage entry, honouring storage offset, strides (non-contiguous
//! views are copied to contiguous) and the archive's `byteorder`.
//!
//! Storage dtypes map onto [`DType`] as the safetensors reader does: float32,
//! float64, float16, bfloat16, int64, uint8 as themselves; int32/int16/int8
//! widen to i64; bool is u8 (0/1).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;

use half::{bf16, f16};
use zip::ZipArchive;

use crate::{DType, Error, Result, Tensor};

/// Largest `data.pkl` accepted (a state dict's pickle is kilobytes to a few MB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Deepest container nesting accepted (a state dict needs about 4).
const MAX_DEPTH: usize = 64;
/// Bound on the work (elements copied or created) one pickle may cause.
const MAX_WORK: u64 = 1 << 27;

// --------------------------------------------------------------------------
// storage dtypes

/// The element type of a pickled storage (`torch.FloatStorage`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum StorageType {
    Float,
    Double,
    Half,
    BFloat16,
    Long,
    Int,
    Short,
    Char,
    Byte,
    Bool,
}

impl StorageType {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => StorageType::Float,
            "DoubleStorage" => StorageType::Double,
            "HalfStorage" => StorageType::Half,
            "BFloat16Storage" => StorageType::BFloat16,
            "LongStorage" => StorageType::Long,
            "IntStorage" => StorageType::Int,
            "ShortStorage" => StorageType::Short,
            "CharStorage" => StorageType::Char,
            "ByteStorage" => StorageType::Byte,
            "BoolStorage" => StorageType::Bool,
            _ => return None,
        })
    }
    fn elem_size(self) -> usize {
        match self {
            StorageType::Double | StorageType::Long => 8,
            StorageType::Float | StorageType::Int => 4,
            StorageType::Half | StorageType::BFloat16 | StorageType::Short => 2,
            StorageType::Char | StorageType::Byte | StorageType::Bool => 1,
        }
    }
    /// The dtype tensors of this storage get.
    fn dtype(self) -> DType {
        match self {
            StorageType::Float => DType::F32,
            StorageType::Double => DType::F64,
            StorageType::Half => DType::F16,
            StorageType::BFloat16 => DType::BF16,
            StorageType::Long | StorageType::Int | StorageType::Short | StorageType::Char => DType::I64,
            StorageType::Byte | StorageType::Bool => DType::U8,
        }
    }
}

// --------------------------------------------------------------------------
// pickle values

/// The allowlisted globals, recognised by name (never imported or called).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TensorType,
    ParameterType,
    Storage(StorageType),
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            ("torch", "Tensor") => Global::TensorType,
            ("torch.nn.parameter", "Parameter") => Global::ParameterType,
            ("torch", s) => Global::Storage(StorageType::from_name(s)?),
            _ => return None,
        })
    }
}

/// A storage as named by a persistent id.
#[derive(Clone, Debug)]
struct StorageRef {
    key: String,
    stype: StorageType,
    numel: usize,
}

/// A tensor view of a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Clone, Debug)]
struct TensorInfo {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

#[derive(Clone)]
struct Seq {
    items: Vec<Value>,
    depth: usize,
}

#[derive(Clone)]
struct Map {
    items: Vec<(Value, Value)>,
    depth: usize,
}

#[derive(Clone)]
enum Value {
    None,
    Bool(#[allow(dead_code)] bool),
    Int(i64),
    Float(#[allow(dead_code)] f64),
    Str(Rc<str>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorInfo>),
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 1,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

// --------------------------------------------------------------------------
// the pickle machine

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Position of the opcode being executed (for messages).
    op_pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    work: u64,
}

type PResult<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine { data, pos: 0, op_pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), work: 0 }
    }

    fn err<T>(&self, msg: impl std::fmt::Display) -> PResult<T> {
        Err(format!("byte {}: {msg}", self.op_pos))
    }

    fn take(&mut self, n: usize, what: &str) -> PResult<&'a [u8]> {
        let end = match self.pos.checked_add(n) {
            Some(e) if e <= self.data.len() => e,
            _ => return self.err(format!("truncated pickle (needs {n} more bytes for {what}, {} left)", self.data.len() - self.pos)),
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> PResult<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> PResult<u8> {
        Ok(self.arr::<1>(what)?[0])
    }
    fn line(&mut self, what: &str) -> PResult<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return self.err(format!("truncated pickle (unterminated {what})"));
        };
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| format!("byte {}: {what} is not UTF-8", self.op_pos))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: u64, what: &str) -> PResult<Value> {
        let n = usize::try_from(n).map_err(|_| format!("byte {}: {what} length {n} too large", self.op_pos))?;
        let b = self.take(n, what)?;
        let s = std::str::from_utf8(b).map_err(|_| format!("byte {}: {what} is not valid UTF-8", self.op_pos))?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn charge(&mut self, n: usize) -> PResult<()> {
        self.work = self.work.saturating_add(n as u64 + 1);
        if self.work > MAX_WORK {
            return self.err("pickle too large or too complex for a state dict");
        }
        Ok(())
    }

    fn push(&mut self, v: Value) -> PResult<()> {
        self.charge(0)?;
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self, op: &str) -> PResult<Value> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err(format!("{op} on an empty stack (malformed pickle)")),
        }
    }
    fn top_mut(&mut self, op: &str) -> PResult<&mut Value> {
        let op_pos = self.op_pos;
        self.stack.last_mut().ok_or_else(|| format!("byte {op_pos}: {op} on an empty stack (malformed pickle)"))
    }
    fn pop_mark(&mut self, op: &str) -> PResult<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            return self.err(format!("{op} without a MARK (malformed pickle)"));
        };
        if m > self.stack.len() {
            return self.err(format!("{op}: MARK above the stack (malformed pickle)"));
        }
        Ok(self.stack.split_off(m))
    }

    fn tuple(&mut self, items: Vec<Value>) -> PResult<Value> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return self.err(format!("containers nested deeper than {MAX_DEPTH}: not a state dict"));
        }
        self.charge(items.len())?;
        Ok(Value::Tuple(Rc::new(Seq { items, depth })))
    }

    fn memo_get(&self, idx: u32) -> PResult<Value> {
        match self.memo.get(&idx) {
            Some(v) => Ok(v.clone()),
            None => self.err(format!("memo entry {idx} read before it was written (malformed pickle)")),
        }
    }
    fn memo_put(&mut self, idx: u32) -> PResult<()> {
        let v = match self.stack.last() {
            Some(v) => v.clone(),
            None => return self.err("memo write from an empty stack (malformed pickle)"),
        };
        self.charge(0)?;
        self.memo.insert(idx, v);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> PResult<Value> {
        match Global::lookup(module, name) {
            Some(g) => Ok(Value::Global(g)),
            None => self.err(format!("refusing pickle global `{module}.{name}`: only plain tensors are supported")),
        }
    }

    /// Add key/value pairs to the dict on top of the stack.
    fn dict_insert(&mut self, pairs: Vec<(Value, Value)>, op: &str) -> PResult<()> {
        let depth = 1 + pairs.iter().map(|(k, v)| k.depth().max(v.depth())).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return self.err(format!("containers nested deeper than {MAX_DEPTH}: not a state dict"));
        }
        let n = pairs.len();
        let op_pos = self.op_pos;
        let top = self.top_mut(op)?;
        let Value::Dict(m) = top else {
            return Err(format!("byte {op_pos}: {op} on a {} (only dicts are supported)", top.kind()));
        };
        // Copy-on-write: a dict also held by the memo is copied (snapshot semantics).
        let copied = if Rc::strong_count(m) > 1 { m.items.len() } else { 0 };
        let m = Rc::make_mut(m);
        m.items.extend(pairs);
        m.depth = m.depth.max(depth);
        self.charge(n + copied)
    }

    fn list_extend(&mut self, items: Vec<Value>, op: &str) -> PResult<()> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return self.err(format!("containers nested deeper than {MAX_DEPTH}: not a state dict"));
        }
        let n = items.len();
        let op_pos = self.op_pos;
        let top = self.top_mut(op)?;
        let Value::List(s) = top else {
            return Err(format!("byte {op_pos}: {op} on a {} (only lists are supported)", top.kind()));
        };
        let copied = if Rc::strong_count(s) > 1 { s.items.len() } else { 0 };
        let s = Rc::make_mut(s);
        s.items.extend(items);
        s.depth = s.depth.max(depth);
        self.charge(n + copied)
    }

    fn run(mut self) -> PResult<Value> {
        loop {
            self.op_pos = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(format!("truncated pickle: ended at byte {} without STOP", self.pos));
            };
            self.pos += 1;
            match op {
                0x80 => {
                    let p = self.u8("PROTO")?;
                    if p > 5 {
                        return self.err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.arr::<8>("FRAME")?;
                }
                b'.' => {
                    let v = self.pop("STOP")?;
                    return Ok(v);
                }
                b'}' => self.push(Value::Dict(Rc::new(Map { items: Vec::new(), depth: 1 })))?,
                b']' => self.push(Value::List(Rc::new(Seq { items: Vec::new(), depth: 1 })))?,
                b')' => {
                    let t = self.tuple(Vec::new())?;
                    self.push(t)?
                }
                b'(' => {
                    self.charge(0)?;
                    self.marks.push(self.stack.len())
                }
                b'q' => {
                    let i = self.u8("BINPUT")? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.arr("LONG_BINPUT")?);
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| "memo too large".to_string())?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8("BINGET")? as u32;
                    let v = self.memo_get(i)?;
                    self.push(v)?
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.arr("LONG_BINGET")?);
                    let v = self.memo_get(i)?;
                    self.push(v)?
                }
                b'c' => {
                    let module = self.line("GLOBAL module")?;
                    let name = self.line("GLOBAL name")?;
                    let g = self.global(module, name)?;
                    self.push(g)?
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Value::Str(m), Value::Str(n)) = (&module, &name) else {
                        return self.err("STACK_GLOBAL operands are not strings (malformed pickle)");
                    };
                    let g = self.global(m, n)?;
                    self.push(g)?
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.arr("BINUNICODE length")?) as u64;
                    let s = self.string(n, "BINUNICODE string")?;
                    self.push(s)?
                }
                0x8c => {
                    let n = self.u8("SHORT_BINUNICODE length")? as u64;
                    let s = self.string(n, "SHORT_BINUNICODE string")?;
                    self.push(s)?
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.arr("BINUNICODE8 length")?);
                    let s = self.string(n, "BINUNICODE8 string")?;
                    self.push(s)?
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.arr("BININT")?) as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8("BININT1")? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.arr("BININT2")?) as i64;
                    self.push(Value::Int(v))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8("LONG1 length")? as u64
                    } else {
                        let n = i32::from_le_bytes(self.arr("LONG4 length")?);
                        if n < 0 {
                            return self.err("LONG4 with a negative length (malformed pickle)");
                        }
                        n as u64
                    };
                    if n > 8 {
                        return self.err(format!("integer of {n} bytes does not fit in 64 bits"));
                    }
                    let b = self.take(n as usize, "LONG1 bytes")?;
                    let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                    a[..b.len()].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(a)))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.arr("BINFLOAT")?);
                    self.push(Value::Float(v))?
                }
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'N' => self.push(Value::None)?,
                b't' => {
                    let items = self.pop_mark("TUPLE")?;
                    let t = self.tuple(items)?;
                    self.push(t)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return self.err(format!("{} needs {n} stack items (malformed pickle)", opcode_name(op)));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let t = self.tuple(items)?;
                    self.push(t)?
                }
                b'0' => {
                    self.pop("POP")?;
                }
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                b'2' => {
                    let v = match self.stack.last() {
                        Some(v) => v.clone(),
                        None => return self.err("DUP on an empty stack (malformed pickle)"),
                    };
                    self.push(v)?
                }
                b'Q' => {
                    let pid = self.pop("BINPERSID")?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let func = self.pop("REDUCE")?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?
                }
                b's' => {
                    let v = self.pop("SETITEM")?;
                    let k = self.pop("SETITEM")?;
                    self.dict_insert(vec![(k, v)], "SETITEM")?
                }
                b'u' => {
                    let items = self.pop_mark("SETITEMS")?;
                    if items.len() % 2 != 0 {
                        return self.err("SETITEMS with an odd number of items (malformed pickle)");
                    }
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    self.dict_insert(pairs, "SETITEMS")?
                }
                b'a' => {
                    let v = self.pop("APPEND")?;
                    self.list_extend(vec![v], "APPEND")?
                }
                b'e' => {
                    let items = self.pop_mark("APPENDS")?;
                    self.list_extend(items, "APPENDS")?
                }
                b'b' => {
                    // OrderedDict.__reduce__ sets instance attributes (a state
                    // dict's `_metadata`) through BUILD: accepted and ignored.
                    let state = self.pop("BUILD")?;
                    let obj = self.stack.last().map(Value::kind).unwrap_or("nothing");
                    if obj != "dict" {
                        return self.err(format!("BUILD on a {obj}: only OrderedDict attributes are supported"));
                    }
                    if !matches!(state, Value::Dict(_) | Value::None | Value::Tuple(_)) {
                        return self.err(format!("BUILD with a {} state: only OrderedDict attributes are supported", state.kind()));
                    }
                }
                _ => {
                    return self.err(format!(
                        "unsupported pickle opcode 0x{op:02x} ({}): only plain tensor state dicts are supported",
                        opcode_name(op)
                    ))
                }
            }
        }
    }

    /// `('storage', torch.XStorage, key, location, numel)` → a storage reference.
    fn persistent_load(&self, pid: Value) -> PResult<Value> {
        let Value::Tuple(t) = &pid else {
            return self.err(format!("persistent id is a {}, expected a ('storage', ...) tuple", pid.kind()));
        };
        let items = &t.items;
        if items.len() != 5 {
            return self.err(format!("persistent id has {} fields, expected 5 ('storage', type, key, location, numel)", items.len()));
        }
        match &items[0] {
            Value::Str(s) if &**s == "storage" => {}
            _ => return self.err("persistent id is not a 'storage' record"),
        }
        let Value::Global(Global::Storage(stype)) = &items[1] else {
            return self.err(format!("persistent id storage type is a {}, expected a torch.*Storage type", items[1].kind()));
        };
        let key = match &items[2] {
            Value::Str(s) => s.to_string(),
            Value::Int(i) if *i >= 0 => i.to_string(),
            other => return self.err(format!("persistent id storage key is a {}", other.kind())),
        };
        let numel = match &items[4] {
            Value::Int(i) if *i >= 0 => *i as usize,
            other => return self.err(format!("persistent id storage size is not a non-negative int ({})", other.kind())),
        };
        Ok(Value::Storage(Rc::new(StorageRef { key, stype: *stype, numel })))
    }

    fn reduce(&mut self, func: Value, args: Value) -> PResult<Value> {
        let Value::Global(g) = func else {
            return self.err(format!("REDUCE of a {}: only allowlisted globals can be called", func.kind()));
        };
        let Value::Tuple(args) = args else {
            return self.err(format!("REDUCE with {} arguments, expected a tuple", args.kind()));
        };
        self.apply(g, &args.items)
    }

    fn apply(&mut self, g: Global, args: &[Value]) -> PResult<Value> {
        match g {
            Global::OrderedDict => {
                if !args.is_empty() {
                    return self.err("collections.OrderedDict called with arguments (only OrderedDict() is supported)");
                }
                Ok(Value::Dict(Rc::new(Map { items: Vec::new(), depth: 1 })))
            }
            Global::RebuildTensorV2 => {
                if !(6..=7).contains(&args.len()) {
                    return self.err(format!("_rebuild_tensor_v2 with {} arguments, expected 6 or 7", args.len()));
                }
                let Value::Storage(s) = &args[0] else {
                    return self.err(format!("_rebuild_tensor_v2: storage argument is a {}", args[0].kind()));
                };
                let offset = match &args[1] {
                    Value::Int(i) if *i >= 0 => *i as usize,
                    _ => return self.err("_rebuild_tensor_v2: storage_offset is not a non-negative int"),
                };
                let shape = self.usize_tuple(&args[2], "size")?;
                let strides = self.usize_tuple(&args[3], "stride")?;
                if shape.len() != strides.len() {
                    return self.err(format!("_rebuild_tensor_v2: size {shape:?} and stride {strides:?} differ in rank"));
                }
                // Every element the view touches must lie inside the storage.
                let mut numel: usize = 1;
                let mut last: usize = offset;
                for (&d, &st) in shape.iter().zip(&strides) {
                    numel = numel.checked_mul(d).ok_or_else(|| format!("byte {}: tensor size {shape:?} overflows", self.op_pos))?;
                    if d > 0 {
                        last = (d - 1)
                            .checked_mul(st)
                            .and_then(|x| x.checked_add(last))
                            .ok_or_else(|| format!("byte {}: tensor view {shape:?}/{strides:?} overflows", self.op_pos))?;
                    }
                }
                if numel > 0 && last >= s.numel {
                    return self.err(format!(
                        "tensor view (offset {offset}, size {shape:?}, stride {strides:?}) reaches element {last} of storage `{}` of {} elements",
                        s.key, s.numel
                    ));
                }
                self.charge(shape.len())?;
                Ok(Value::Tensor(Rc::new(TensorInfo { storage: (**s).clone(), offset, shape, strides })))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let want = if g == Global::RebuildParameter { 3 } else { 4 };
                if args.len() != want {
                    return self.err(format!("_rebuild_parameter with {} arguments, expected {want}", args.len()));
                }
                match &args[0] {
                    Value::Tensor(_) => Ok(args[0].clone()),
                    other => self.err(format!("_rebuild_parameter of a {}", other.kind())),
                }
            }
            Global::RebuildFromTypeV2 => {
                // (func, new_type, args, state): func(*args), the type (Tensor or
                // Parameter) only changes the Python class.
                if args.len() != 4 {
                    return self.err(format!("_rebuild_from_type_v2 with {} arguments, expected 4", args.len()));
                }
                let Value::Global(f) = args[0] else {
                    return self.err("_rebuild_from_type_v2: function is not an allowlisted global");
                };
                if !matches!(args[1], Value::Global(Global::TensorType | Global::ParameterType)) {
                    return self.err("_rebuild_from_type_v2: only torch.Tensor and torch.nn.Parameter types are supported");
                }
                if !matches!(f, Global::RebuildTensorV2 | Global::RebuildParameter | Global::RebuildParameterWithState) {
                    return self.err("_rebuild_from_type_v2: only tensor rebuild functions are supported");
                }
                let Value::Tuple(inner) = &args[2] else {
                    return self.err("_rebuild_from_type_v2: arguments are not a tuple");
                };
                let inner = inner.clone();
                self.apply(f, &inner.items)
            }
            Global::TensorType | Global::ParameterType | Global::Storage(_) => {
                self.err(format!("calling {g:?} is not supported: only plain tensors are supported"))
            }
        }
    }

    fn usize_tuple(&self, v: &Value, what: &str) -> PResult<Vec<usize>> {
        let Value::Tuple(t) = v else {
            return self.err(format!("_rebuild_tensor_v2: {what} is a {}, expected a tuple", v.kind()));
        };
        t.items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => self.err(format!("_rebuild_tensor_v2: {what} holds a negative or non-int entry")),
            })
            .collect()
    }
}

/// Interpret a state-dict pickle: the names (file order, duplicates resolved
/// as Python does: last value, first position) and their tensor views.
fn parse_state_dict(data: &[u8]) -> PResult<Vec<(String, TensorInfo)>> {
    let v = Machine::new(data).run()?;
    let Value::Dict(m) = v else {
        return Err(format!("the pickled object is a {}, expected a dict of name → tensor (a state dict)", v.kind()));
    };
    let mut out: Vec<(String, TensorInfo)> = Vec::with_capacity(m.items.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in &m.items {
        let Value::Str(k) = k else {
            return Err(format!("state dict key is a {}, expected a string", k.kind()));
        };
        let Value::Tensor(t) = v else {
            return Err(format!("state dict entry `{k}` is a {}, expected a tensor", v.kind()));
        };
        match index.get(&**k) {
            Some(&i) => out[i].1 = (**t).clone(),
            None => {
                index.insert(k.to_string(), out.len());
                out.push((k.to_string(), (**t).clone()));
            }
        }
    }
    Ok(out)
}

// --------------------------------------------------------------------------
// decoding storages

/// Storage element indices of a strided view, in row-major order.
struct StridedIndices {
    shape: Vec<usize>,
    strides: Vec<usize>,
    idx: Vec<usize>,
    cur: usize,
    left: usize,
}

impl StridedIndices {
    fn new(t: &TensorInfo) -> Self {
        let n = t.shape.iter().product();
        StridedIndices { shape: t.shape.clone(), strides: t.strides.clone(), idx: vec![0; t.shape.len()], cur: t.offset, left: n }
    }
}

impl Iterator for StridedIndices {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let out = self.cur;
        // Advance the odometer (bounds were validated when parsing).
        for d in (0..self.shape.len()).rev() {
            self.idx[d] += 1;
            if self.idx[d] < self.shape[d] {
                self.cur += self.strides[d];
                break;
            }
            self.cur -= (self.shape[d] - 1) * self.strides[d];
            self.idx[d] = 0;
        }
        Some(out)
    }
}

fn gather<T, const N: usize>(
    bytes: &[u8],
    t: &TensorInfo,
    big_endian: bool,
    f: impl Fn([u8; N]) -> T,
) -> std::result::Result<Vec<T>, String> {
    let n: usize = t.shape.iter().product();
    let contiguous = {
        let mut expected = 1usize;
        let mut ok = true;
        for (&d, &s) in t.shape.iter().zip(&t.strides).rev() {
            if d != 1 && s != expected {
                ok = false;
                break;
            }
            expected *= d;
        }
        ok
    };
    let at = |i: usize| -> Option<T> {
        let s = bytes.get(i.checked_mul(N)?..i.checked_mul(N)?.checked_add(N)?)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        if big_endian {
            a.reverse();
        }
        Some(f(a))
    };
    let short = || format!("storage `{}` is shorter than the tensor view", t.storage.key);
    if n == 0 {
        return Ok(Vec::new());
    }
    if contiguous {
        let start = t.offset.checked_mul(N).ok_or_else(short)?;
        let end = t.offset.checked_add(n).and_then(|e| e.checked_mul(N)).ok_or_else(short)?;
        let b = bytes.get(start..end).ok_or_else(short)?;
        Ok(b.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                if big_endian {
                    a.reverse();
                }
                f(a)
            })
            .collect())
    } else {
        StridedIndices::new(t).map(|i| at(i).ok_or_else(short)).collect()
    }
}

fn decode(bytes: &[u8], t: &TensorInfo, big_endian: bool) -> std::result::Result<Tensor, String> {
    let shape = &t.shape;
    let be = big_endian;
    let r = match t.storage.stype {
        StorageType::Float => Tensor::from_vec(gather(bytes, t, be, f32::from_le_bytes)?, shape),
        StorageType::Double => Tensor::from_vec(gather(bytes, t, be, f64::from_le_bytes)?, shape),
        StorageType::Half => Tensor::from_vec(gather(bytes, t, be, |c| f16::from_bits(u16::from_le_bytes(c)))?, shape),
        StorageType::BFloat16 => Tensor::from_vec(gather(bytes, t, be, |c| bf16::from_bits(u16::from_le_bytes(c)))?, shape),
        StorageType::Long => Tensor::from_vec(gather(bytes, t, be, i64::from_le_bytes)?, shape),
        StorageType::Int => Tensor::from_vec(gather(bytes, t, be, |c| i32::from_le_bytes(c) as i64)?, shape),
        StorageType::Short => Tensor::from_vec(gather(bytes, t, be, |c| i16::from_le_bytes(c) as i64)?, shape),
        StorageType::Char => Tensor::from_vec(gather(bytes, t, be, |c: [u8; 1]| c[0] as i8 as i64)?, shape),
        StorageType::Byte | StorageType::Bool => Tensor::from_vec(gather(bytes, t, be, |c: [u8; 1]| c[0])?, shape),
    };
    r.map_err(|e| e.to_string())
}

// --------------------------------------------------------------------------
// the file

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// An open `pytorch_model.bin` (torch.save zip archive). The pickle is
/// interpreted and every storage entry checked at open; tensors are decoded
/// on request.
pub struct PytorchFile {
    path: PathBuf,
    archive: Mutex<ZipArchive<Box<dyn ReadSeek>>>,
    /// `<archive name>/`, the prefix of every entry.
    prefix: String,
    big_endian: bool,
    /// Names in the pickle's order, with their views.
    tensors: Vec<(String, TensorInfo)>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for PytorchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PytorchFile({}, {} tensors)", self.path.display(), self.tensors.len())
    }
}

impl PytorchFile {
    /// Open and validate `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| Error::file(path, e))?;
        let mut magic = [0u8; 4];
        let got = file.read(&mut magic).map_err(|e| Error::file(path, e))?;
        file.rewind().map_err(|e| Error::file(path, e))?;
        Self::from_reader(path, Box::new(BufReader::new(file)), &magic[..got])
    }

    /// Read an archive held in memory; `path` only names it in messages.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        let magic: Vec<u8> = bytes.iter().take(4).copied().collect();
        Self::from_reader(path.as_ref(), Box::new(Cursor::new(bytes)), &magic)
    }

    fn from_reader(path: &Path, reader: Box<dyn ReadSeek>, magic: &[u8]) -> Result<Self> {
        let ferr = |msg: String| Error::file(path, msg);
        let mut archive = match ZipArchive::new(reader) {
            Ok(a) => a,
            Err(e) => {
                let msg = if magic.first() == Some(&0x80) {
                    "legacy (pre-1.6, non-zip) torch.save format is not supported: re-save it with a current torch".to_string()
                } else if magic.starts_with(b"PK") {
                    format!("unreadable zip archive: {e}")
                } else {
                    "not a zip archive (expected a torch.save zip file such as pytorch_model.bin)".to_string()
                };
                return Err(ferr(msg));
            }
        };
        // `<prefix>/data.pkl`: torch writes exactly one, under the archive name.
        let pkls: Vec<String> = archive
            .file_names()
            .filter(|n| n.strip_suffix("/data.pkl").is_some_and(|p| !p.is_empty() && !p.contains('/')) || *n == "data.pkl")
            .map(str::to_string)
            .collect();
        let pkl_name = match pkls.as_slice() {
            [one] => one.clone(),
            [] => return Err(ferr("no `<name>/data.pkl` entry: not a torch.save archive".into())),
            _ => return Err(ferr(format!("several data.pkl entries ({}): ambiguous archive", pkls.join(", ")))),
        };
        let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();

        let big_endian = match read_entry(&mut archive, &format!("{prefix}byteorder"), 64) {
            Ok(None) => false,
            Ok(Some(b)) => match String::from_utf8_lossy(&b).trim() {
                "little" => false,
                "big" => true,
                other => return Err(ferr(format!("{prefix}byteorder says `{other}`, expected little or big"))),
            },
            Err(e) => return Err(ferr(format!("{prefix}byteorder: {e}"))),
        };

        let pkl = match read_entry(&mut archive, &pkl_name, MAX_PICKLE_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(ferr(format!("{pkl_name}: missing"))),
            Err(e) => return Err(ferr(format!("{pkl_name}: {e}"))),
        };
        let tensors = parse_state_dict(&pkl).map_err(|e| ferr(format!("{pkl_name}: {e}")))?;

        // Every storage must be present, uncompressed, and large enough.
        let mut checked: HashSet<(String, usize, usize)> = HashSet::new();
        for (name, t) in &tensors {
            let s = &t.storage;
            let need = s.numel.checked_mul(s.stype.elem_size());
            if !checked.insert((s.key.clone(), s.numel, s.stype.elem_size())) {
                continue;
            }
            let entry = format!("{prefix}data/{}", s.key);
            let Some(i) = archive.index_for_name(&entry) else {
                return Err(ferr(format!("tensor `{name}`: storage entry `{entry}` is missing")));
            };
            let f = archive.by_index_raw(i).map_err(|e| ferr(format!("tensor `{name}`: storage entry `{entry}`: {e}")))?;
            if f.compression() != zip::CompressionMethod::Stored {
                return Err(ferr(format!(
                    "tensor `{name}`: storage entry `{entry}` is compressed ({:?}); only stored (uncompressed) entries, as torch.save writes them, are supported",
                    f.compression()
                )));
            }
            match need {
                Some(need) if f.size() >= need as u64 => {}
                _ => {
                    return Err(ferr(format!(
                        "tensor `{name}`: storage entry `{entry}` has {} bytes, expected {} elements of {} bytes",
                        f.size(),
                        s.numel,
                        s.stype.elem_size()
                    )))
                }
            }
        }
        let index = tensors.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        Ok(PytorchFile { path: path.to_path_buf(), archive: Mutex::new(archive), prefix, big_endian, tensors, index })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted (as [`crate::safetensors_io::SafeTensorsFile::names`]).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.iter().map(|(n, _)| n.clone()).collect();
        v.sort();
        v
    }

    /// Tensor names in the order of the pickled dict (the state dict's order).
    pub fn names_in_file_order(&self) -> Vec<String> {
        self.tensors.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.info(name).map(|t| t.shape.clone())
    }

    /// The dtype [`PytorchFile::get`] returns for `name`.
    pub fn dtype_of(&self, name: &str) -> Option<DType> {
        self.info(name).map(|t| t.storage.stype.dtype())
    }

    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i].1)
    }

    /// The tensor `name` (contiguous) in its stored dtype (int32/int16/int8
    /// widened to i64, bool as u8).
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let t = self.info(name).ok_or_else(|| Error::file(&self.path, format!("missing tensor `{name}`")))?;
        let entry = format!("{}data/{}", self.prefix, t.storage.key);
        let bytes = {
            let mut archive = self.archive.lock().unwrap_or_else(|p| p.into_inner());
            read_entry(&mut archive, &entry, u64::MAX)
                .map_err(|e| Error::file(&self.path, format!("tensor `{name}`: storage entry `{entry}`: {e}")))?
                .ok_or_else(|| Error::file(&self.path, format!("tensor `{name}`: storage entry `{entry}` is missing")))?
        };
        decode(&bytes, t, self.big_endian).map_err(|e| Error::file(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// The tensor `name`, checked to have `shape`, converted to `dtype`
    /// (float dtypes convert into each other; others must match).
    pub fn get_as(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let (have_shape, have_dtype) = match self.info(name) {
            Some(t) => (t.shape.clone(), t.storage.stype.dtype()),
            None => return Err(Error::file(&self.path, format!("missing tensor `{name}`"))),
        };
        if have_shape != shape {
            return Err(Error::file(&self.path, format!("tensor `{name}` has shape {have_shape:?}, expected {shape:?}")));
        }
        if have_dtype != dtype && !(have_dtype.is_float() && dtype.is_float()) {
            return Err(Error::file(
                &self.path,
                format!("tensor `{name}` has dtype {}, expected {}", have_dtype.name(), dtype.name()),
            ));
        }
        self.get(name)?.to_dtype(dtype)
    }

    /// Every tensor, in the state dict's order.
    pub fn load_all(&self) -> Result<Vec<(String, Tensor)>> {
        self.tensors.iter().map(|(n, _)| Ok((n.clone(), self.get(n)?))).collect()
    }
}

/// Read a whole entry, `None` if absent; refuses entries over `limit` bytes.
fn read_entry(
    archive: &mut ZipArchive<Box<dyn ReadSeek>>,
    name: &str,
    limit: u64,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let Some(i) = archive.index_for_name(name) else {
        return Ok(None);
    };
    let f = archive.by_index(i).map_err(|e| e.to_string())?;
    let size = f.size();
    if size > limit {
        return Err(format!("entry of {size} bytes is larger than the {limit} accepted"));
    }
    let mut out = Vec::with_capacity(usize::try_from(size.min(1 << 30)).unwrap_or(0));
    f.take(limit.saturating_add(1)).read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() as u64 > limit {
        return Err(format!("entry is larger than the {limit} bytes accepted"));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_indices_walk_a_transposed_view() {
        let st = StorageRef { key: "0".into(), stype: StorageType::Float, numel: 7 };
        let t = TensorInfo { storage: st, offset: 1, shape: vec![3, 2], strides: vec![1, 3] };
        let v: Vec<usize> = StridedIndices::new(&t).collect();
        assert_eq!(v, vec![1, 4, 2, 5, 3, 6]);
        let st = StorageRef { key: "0".into(), stype: StorageType::Float, numel: 1 };
        let t = TensorInfo { storage: st, offset: 0, shape: vec![], strides: vec![] };
        assert_eq!(StridedIndices::new(&t).collect::<Vec<_>>(), vec![0]);
    }
}
