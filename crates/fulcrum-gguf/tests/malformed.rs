//! Hostile and broken files must produce typed errors, never panics.

use fulcrum_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetadataValue};
use proptest::prelude::*;

fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        MetadataValue::String("llama".into()),
    )
    .add_metadata("llama.block_count", MetadataValue::U32(2))
    .add_metadata(
        "tokenizer.ggml.tokens",
        MetadataValue::strings(["a", "b", "c"]),
    )
    .add_metadata(
        "tokenizer.ggml.scores",
        MetadataValue::f32s([0.0, -1.0, -2.0]),
    );
    w.add_tensor("weight_a", GgmlType::F32, &[4, 2], vec![0u8; 32])
        .unwrap();
    w.add_tensor("weight_b", GgmlType::Q8_0, &[32, 3], vec![0u8; 34 * 3])
        .unwrap();
    w.to_bytes()
}

#[test]
fn valid_file_round_trips() {
    let bytes = valid_file();
    let f = GgufFile::from_bytes(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata.get_u32("llama.block_count").unwrap(), 2);
    assert_eq!(
        f.metadata.get_str_array("tokenizer.ggml.tokens").unwrap(),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        f.metadata.get_f32_array("tokenizer.ggml.scores").unwrap(),
        vec![0.0, -1.0, -2.0]
    );
    let b = f.tensor("weight_b").unwrap();
    assert_eq!(b.ty, GgmlType::Q8_0);
    assert_eq!(b.dims, vec![32, 3]);
    assert_eq!(f.tensor_data(b).len(), 102);
    assert_eq!(b.range.start as u64 % f.alignment, 0);
}

#[test]
fn version_2_is_read() {
    let mut w = GgufWriter::new();
    w.version(2).add_metadata("k", MetadataValue::U64(7));
    let f = GgufFile::from_bytes(&w.to_bytes()).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.metadata.get_u64("k").unwrap(), 7);
}

#[test]
fn bad_magic() {
    let mut bytes = valid_file();
    bytes[0] = b'X';
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::BadMagic { .. })
    ));
}

#[test]
fn unsupported_version() {
    let mut bytes = valid_file();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::UnsupportedVersion(1))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid_file();
    for len in 0..bytes.len() {
        match GgufFile::from_bytes(&bytes[..len]) {
            Err(_) => {}
            Ok(_) => panic!("truncated to {len} of {} bytes parsed fine", bytes.len()),
        }
    }
}

#[test]
fn absurd_tensor_count() {
    let mut bytes = valid_file();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::ImplausibleCount {
            what: "tensor count",
            ..
        })
    ));
}

#[test]
fn absurd_metadata_count() {
    let mut bytes = valid_file();
    bytes[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::ImplausibleCount { .. })
    ));
}

/// Finds the tensor table entry of tensor `name` and returns the position of
/// its type id field.
fn tensor_field_pos(bytes: &[u8], name: &str, n_dims: usize) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    at + needle.len() + 4 + 8 * n_dims
}

#[test]
fn unknown_tensor_type() {
    let mut bytes = valid_file();
    let p = tensor_field_pos(&bytes, "weight_b", 2);
    bytes[p..p + 4].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::UnsupportedTensorType { type_id: 99, .. })
    ));
}

#[test]
fn offset_out_of_file() {
    let mut bytes = valid_file();
    let p = tensor_field_pos(&bytes, "weight_b", 2) + 4;
    bytes[p..p + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::BadTensor { .. })
    ));
    bytes[p..p + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::BadTensor { .. })
    ));
}

#[test]
fn misaligned_offset() {
    let mut bytes = valid_file();
    let p = tensor_field_pos(&bytes, "weight_b", 2) + 4;
    bytes[p..p + 8].copy_from_slice(&3u64.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::BadTensor { .. })
    ));
}

#[test]
fn overflowing_dims() {
    let mut bytes = valid_file();
    let p = tensor_field_pos(&bytes, "weight_a", 2) - 16;
    bytes[p..p + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    bytes[p + 8..p + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(&bytes),
        Err(GgufError::BadTensor { .. })
    ));
}

#[test]
fn row_not_whole_blocks() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_tensor("q", GgmlType::Q4_0, &[33, 1], vec![0; 18])
        .is_err());
}

#[test]
fn duplicate_key_and_tensor() {
    let mut w = GgufWriter::new();
    w.add_tensor("t", GgmlType::F32, &[1], vec![0; 4]).unwrap();
    w.add_tensor("t", GgmlType::F32, &[1], vec![0; 4]).unwrap();
    assert!(matches!(
        GgufFile::from_bytes(&w.to_bytes()),
        Err(GgufError::DuplicateTensor(_))
    ));
}

#[test]
fn wrong_type_lookups_name_the_key() {
    let f = GgufFile::from_bytes(&valid_file()).unwrap();
    let e = f.metadata.get_u32("general.architecture").unwrap_err();
    assert!(e.to_string().contains("general.architecture"), "{e}");
    let e = f.metadata.get_f32("nope").unwrap_err();
    assert!(matches!(e, GgufError::MissingKey(_)));
}

#[test]
fn deep_nesting_is_rejected() {
    // array(array(array(array(array(u8)))))
    let mut v = MetadataValue::Array(fulcrum_gguf::ValueType::U8, vec![MetadataValue::U8(1)]);
    for _ in 0..5 {
        v = MetadataValue::Array(fulcrum_gguf::ValueType::Array, vec![v]);
    }
    let mut w = GgufWriter::new();
    w.add_metadata("deep", v);
    assert!(matches!(
        GgufFile::from_bytes(&w.to_bytes()),
        Err(GgufError::NestingTooDeep { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes behind a valid magic and version never panic.
    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&tail);
        let _ = GgufFile::from_bytes(&bytes);
    }

    /// Flipping bytes of a valid file never panics, and a file that still
    /// parses only exposes tensor ranges inside the file.
    #[test]
    fn corrupted_valid_file_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = valid_file();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        if let Ok(f) = GgufFile::from_bytes(&bytes) {
            for t in &f.tensors {
                prop_assert!(t.range.end <= bytes.len());
                prop_assert_eq!(f.tensor_data(t).len(), t.num_bytes());
            }
        }
    }
}
