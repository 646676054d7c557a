//! Parsing a GGUF file.
//!
//! Layout (all little-endian): magic `GGUF`, version u32, tensor count u64,
//! metadata count u64, the metadata entries, the tensor table, padding to
//! `general.alignment` (default 32), then the data section. Every tensor's
//! offset is relative to the data section and aligned.
//!
//! Every count read from the file is checked against the bytes that remain
//! before anything is allocated for it, and every tensor's byte range is
//! checked against the data section, so no input can make the parser allocate
//! absurdly, read out of bounds or panic.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;

use crate::metadata::{Metadata, MetadataValue, ValueType};
use crate::{GgmlType, GgufError};

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal but real files never nest deeper than this.
const MAX_NESTING: usize = 4;

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (innermost) axis. A weight
    /// matrix with `n` output rows of `k` inputs has `dims == [k, n]`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte range inside the whole file (already validated).
    pub range: Range<usize>,
}

impl TensorInfo {
    pub fn num_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn num_bytes(&self) -> usize {
        self.range.len()
    }
}

enum Backing {
    Mmap(Mmap),
    /// u64 words so tensor data stays 8-byte aligned like in a memory map.
    Owned {
        words: Vec<u64>,
        len: usize,
    },
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned { words, len } => {
                // SAFETY: `words` owns at least `len` initialized bytes (a u64 is
                // 8 plain bytes), and u8 has no alignment requirement.
                unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), *len) }
            }
        }
    }
}

/// A parsed GGUF file. Tensor data is not copied: [`GgufFile::tensor_data`]
/// returns slices of the memory map.
pub struct GgufFile {
    backing: Backing,
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Offset of the data section in the file.
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses a file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only. Another process truncating the file
        // while it is mapped would fault; model files are not edited in place
        // (fulcrum writes its cache by rename), which is the accepted contract
        // of every mmap-based model loader.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(Backing::Mmap(map))
    }

    /// Parses a file held in memory (tests, synthetic models).
    pub fn from_bytes(bytes: &[u8]) -> Result<GgufFile, GgufError> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `words` has room for at least `bytes.len()` bytes; the regions
        // do not overlap (fresh allocation).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                words.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            );
        }
        Self::parse(Backing::Owned {
            words,
            len: bytes.len(),
        })
    }

    fn parse(backing: Backing) -> Result<GgufFile, GgufError> {
        let bytes = backing.bytes();
        let mut cur = Cursor { bytes, pos: 0 };
        let header = cur.header()?;
        let metadata = cur.metadata(header.num_kv)?;
        let alignment = alignment(&metadata)?;
        let table = cur.tensor_table(header.num_tensors, alignment)?;

        let file_len = bytes.len() as u64;
        let data_offset = cur.pos.div_ceil(alignment) * alignment;
        if header.num_tensors > 0 && data_offset > file_len {
            return Err(GgufError::Truncated {
                what: "data section",
                offset: cur.pos,
                needed: data_offset - cur.pos,
                file_len,
            });
        }
        let tensors = place_tensors(table, data_offset, file_len)?;

        Ok(GgufFile {
            backing,
            version: header.version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Like [`GgufFile::tensor`] but an error naming the tensor when absent.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    /// The tensor's bytes, without copying. The range was validated at parse time.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &self.bytes()[info.range.clone()]
    }
}

/// The fixed-size start of the file.
struct Header {
    version: u32,
    num_tensors: u64,
    num_kv: u64,
}

/// A tensor table entry as read, its offset still relative to the data
/// section (whose start is known only once the whole table is read).
struct RawTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    offset: u64,
    size: u64,
}

/// `general.alignment`, or the default: a power of two up to 1 MiB.
fn alignment(metadata: &Metadata) -> Result<u64, GgufError> {
    let Some(v) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let a = v
        .as_i128()
        .and_then(|a| u64::try_from(a).ok())
        .ok_or(GgufError::WrongType {
            key: "general.alignment".into(),
            expected: "unsigned integer",
            found: v.type_name(),
        })?;
    if a == 0 || !a.is_power_of_two() || a > (1 << 20) {
        return Err(GgufError::BadAlignment(a));
    }
    Ok(a)
}

/// Each entry's byte range in the file, checked to lie inside it.
fn place_tensors(
    table: Vec<RawTensor>,
    data_offset: u64,
    file_len: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(table.len());
    for t in table {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                name: t.name,
                dims: t.dims,
                ty: t.ty,
                range: start as usize..end as usize,
            }),
            _ => {
                return Err(GgufError::BadTensor {
                    name: t.name,
                    reason: format!(
                        "data at offset {} + {} bytes lies outside the file ({} bytes of data)",
                        t.offset,
                        t.size,
                        file_len.saturating_sub(data_offset)
                    ),
                })
            }
        }
    }
    Ok(tensors)
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        self.bytes.len() as u64 - self.pos
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                file_len: self.bytes.len() as u64,
            });
        }
        let start = self.pos as usize;
        self.pos += n;
        Ok(&self.bytes[start..start + n as usize])
    }

    /// Rejects a count that could not possibly fit in the rest of the file.
    fn check_count(
        &self,
        what: &'static str,
        count: u64,
        min_item_size: u64,
    ) -> Result<(), GgufError> {
        let limit = self.remaining() / min_item_size;
        if count > limit {
            return Err(GgufError::ImplausibleCount {
                what,
                value: count,
                limit,
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let at = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::InvalidUtf8 { what, offset: at })
    }

    /// Magic, version and the two counts, each count checked against the
    /// bytes that remain.
    fn header(&mut self) -> Result<Header, GgufError> {
        let magic: [u8; 4] = self.array("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = self.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let num_tensors = self.u64("tensor count")?;
        let num_kv = self.u64("metadata count")?;
        // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes,
        // a tensor entry at least 8 + 4 + 4 + 8 bytes.
        self.check_count("metadata count", num_kv, 13)?;
        self.check_count("tensor count", num_tensors, 24)?;
        Ok(Header {
            version,
            num_tensors,
            num_kv,
        })
    }

    /// The `num_kv` metadata entries; a key may appear once.
    fn metadata(&mut self, num_kv: u64) -> Result<Metadata, GgufError> {
        let mut metadata = Metadata::new();
        for _ in 0..num_kv {
            let key = self.string("metadata key")?;
            let type_id = self.u32("metadata value type")?;
            let value = self.value(&key, type_id, 0)?;
            if !metadata.insert(key.clone(), value) {
                return Err(GgufError::DuplicateKey(key));
            }
        }
        Ok(metadata)
    }

    /// The `num_tensors` entries of the tensor table; a name may appear once.
    fn tensor_table(
        &mut self,
        num_tensors: u64,
        alignment: u64,
    ) -> Result<Vec<RawTensor>, GgufError> {
        let mut table = Vec::with_capacity(num_tensors as usize);
        let mut names = HashSet::new();
        for _ in 0..num_tensors {
            let t = self.tensor_entry(alignment)?;
            if !names.insert(t.name.clone()) {
                return Err(GgufError::DuplicateTensor(t.name));
            }
            table.push(t);
        }
        Ok(table)
    }

    /// One tensor table entry: a shape ggml allows, a known type whose
    /// blocks tile the rows, a byte size without overflow, an aligned offset.
    fn tensor_entry(&mut self, alignment: u64) -> Result<RawTensor, GgufError> {
        let name = self.string("tensor name")?;
        let num_dims = self.u32("tensor dimension count")?;
        if num_dims == 0 || num_dims > MAX_DIMS {
            return Err(GgufError::BadTensor {
                name,
                reason: format!("{num_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            });
        }
        let mut dims = Vec::with_capacity(num_dims as usize);
        for _ in 0..num_dims {
            dims.push(self.u64("tensor dimension")?);
        }
        let type_id = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnsupportedTensorType {
            name: name.clone(),
            type_id,
        })?;
        let bad = |reason: String| GgufError::BadTensor {
            name: name.clone(),
            reason,
        };
        let num_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("element count of shape {dims:?} overflows")))?;
        if dims[0] % ty.block_size() as u64 != 0 {
            return Err(bad(format!(
                "row length {} is not a multiple of the {ty} block size {}",
                dims[0],
                ty.block_size()
            )));
        }
        let size = ty
            .bytes_for(num_elements)
            .ok_or_else(|| bad(format!("byte size of shape {dims:?} overflows")))?;
        if offset % alignment != 0 {
            return Err(bad(format!(
                "offset {offset} is not aligned to {alignment}"
            )));
        }
        Ok(RawTensor {
            name,
            dims,
            ty,
            offset,
            size,
        })
    }

    fn value(&mut self, key: &str, type_id: u32, depth: usize) -> Result<MetadataValue, GgufError> {
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.to_string(),
            type_id,
        })?;
        const W: &str = "metadata value";
        Ok(match ty {
            ValueType::U8 => MetadataValue::U8(self.array::<1>(W)?[0]),
            ValueType::I8 => MetadataValue::I8(self.array::<1>(W)?[0] as i8),
            ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(self.array(W)?)),
            ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(self.array(W)?)),
            ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(self.array(W)?)),
            ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(self.array(W)?)),
            ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(self.array(W)?)),
            ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(self.array(W)?)),
            ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(self.array(W)?)),
            ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(self.array(W)?)),
            ValueType::Bool => match self.array::<1>(W)?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                b => {
                    return Err(GgufError::WrongType {
                        key: key.to_string(),
                        expected: "bool (0 or 1)",
                        found: if b > 1 { "byte > 1" } else { "byte" },
                    })
                }
            },
            ValueType::String => MetadataValue::String(self.string("metadata string")?),
            ValueType::Array => {
                if depth >= MAX_NESTING {
                    return Err(GgufError::NestingTooDeep {
                        key: key.to_string(),
                        max: MAX_NESTING,
                    });
                }
                let elem_id = self.u32("array element type")?;
                let elem =
                    ValueType::from_id(elem_id).ok_or_else(|| GgufError::UnknownValueType {
                        key: key.to_string(),
                        type_id: elem_id,
                    })?;
                let count = self.u64("array length")?;
                self.check_count("array length", count, elem.min_encoded_size())?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(key, elem_id, depth + 1)?);
                }
                MetadataValue::Array(elem, items)
            }
        })
    }
}
