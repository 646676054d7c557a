//! Writing GGUF files: used by tests to build tiny synthetic models and hostile
//! variants of valid files.

use std::io::Write;

use crate::metadata::{MetadataValue, ValueType};
use crate::reader::DEFAULT_ALIGNMENT;
use crate::{GgmlType, GgufError};

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then serializes them as GGUF v3.
///
/// ```
/// use fulcrum_gguf::{GgufWriter, GgufFile, GgmlType, MetadataValue};
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", MetadataValue::String("llama".into()));
/// w.add_tensor("x", GgmlType::F32, &[2], 1.5f32.to_le_bytes().repeat(2)).unwrap();
/// let f = GgufFile::from_bytes(&w.to_bytes()).unwrap();
/// assert_eq!(f.metadata.get_str("general.architecture").unwrap(), "llama");
/// ```
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor>,
    version: Option<u32>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes this version number in the header (default 3); versions 2 and 3
    /// share one layout.
    pub fn version(&mut self, v: u32) -> &mut Self {
        self.version = Some(v);
        self
    }

    /// Adds or replaces a metadata entry.
    pub fn add_metadata(&mut self, key: &str, value: MetadataValue) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds a tensor; `dims` in ggml order (innermost first), `data` already
    /// encoded in `ty`.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        let n: u64 = dims.iter().product();
        let expected = ty.bytes_for(n).ok_or_else(|| {
            GgufError::Writer(format!(
                "{name}: {n} elements is not a whole number of {ty} blocks"
            ))
        })?;
        if expected != data.len() as u64 {
            return Err(GgufError::Writer(format!(
                "{name}: {} bytes given, shape {dims:?} in {ty} needs {expected}",
                data.len()
            )));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(self)
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_i128())
            .and_then(|a| u64::try_from(a).ok())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let align = self.alignment();
        let mut head = Vec::new();
        head.extend_from_slice(b"GGUF");
        head.extend_from_slice(&self.version.unwrap_or(3).to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_string(&mut head, k);
            head.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_string(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ty.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(align) * align;
        }
        pad_to(&mut head, align);
        w.write_all(&head)?;
        let mut written = 0u64;
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            w.write_all(&vec![0u8; (off - written) as usize])?;
            w.write_all(&t.data)?;
            written = off + t.data.len() as u64;
        }
        Ok(())
    }
}

fn pad_to(buf: &mut Vec<u8>, align: u64) {
    let len = buf.len() as u64;
    buf.resize((len.div_ceil(align) * align) as usize, 0);
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &MetadataValue) {
    match v {
        MetadataValue::U8(x) => buf.push(*x),
        MetadataValue::I8(x) => buf.push(*x as u8),
        MetadataValue::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::Bool(x) => buf.push(*x as u8),
        MetadataValue::String(s) => put_string(buf, s),
        MetadataValue::Array(elem, items) => {
            buf.extend_from_slice(&(*elem as u32).to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                debug_assert_eq!(it.value_type(), *elem, "GGUF arrays are homogeneous");
                put_value(buf, it);
            }
        }
    }
}

impl MetadataValue {
    /// Convenience: an array of strings.
    pub fn strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> MetadataValue {
        MetadataValue::Array(
            ValueType::String,
            items
                .into_iter()
                .map(|s| MetadataValue::String(s.as_ref().to_string()))
                .collect(),
        )
    }

    /// Convenience: an array of f32.
    pub fn f32s(items: impl IntoIterator<Item = f32>) -> MetadataValue {
        MetadataValue::Array(
            ValueType::F32,
            items.into_iter().map(MetadataValue::F32).collect(),
        )
    }

    /// Convenience: an array of i32.
    pub fn i32s(items: impl IntoIterator<Item = i32>) -> MetadataValue {
        MetadataValue::Array(
            ValueType::I32,
            items.into_iter().map(MetadataValue::I32).collect(),
        )
    }
}
