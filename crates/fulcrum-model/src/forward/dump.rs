//! Development aid: the forward pass's intermediate tensors written to files,
//! for comparison with llama.cpp's (`tools/dump_tensors.cpp` writes those,
//! `tools/compare_tensors.py` compares the two sets).

use std::path::PathBuf;

/// A directory receiving intermediate tensors as raw little-endian f32, one
/// file per tensor and layer: `{name}-{layer}.bin` (`attn_norm-0.bin`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDump {
    dir: PathBuf,
}

impl TensorDump {
    /// Dumps into `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> TensorDump {
        TensorDump { dir: dir.into() }
    }

    /// The directory `FULCRUM_DUMP_DIR` names, when that variable is set.
    pub fn from_env() -> Option<TensorDump> {
        std::env::var_os("FULCRUM_DUMP_DIR").map(TensorDump::new)
    }

    /// Writes `v` to `{dir}/{name}-{layer}.bin`. A failed write is ignored:
    /// a debugging aid must not fail the step it observes.
    pub fn write(&self, name: &str, layer: usize, v: &[f32]) {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        let _ = std::fs::write(self.dir.join(format!("{name}-{layer}.bin")), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tools/compare_tensors.py reads `{name}-{layer}.bin` as raw f32.
    #[test]
    fn writes_name_layer_files_of_little_endian_f32() {
        let dir = std::env::temp_dir().join(format!("fulcrum-dump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TensorDump::new(&dir).write("Qcur", 3, &[1.0, -2.5]);
        let bytes = std::fs::read(dir.join("Qcur-3.bin")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let want: Vec<u8> = [1.0f32, -2.5]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        assert_eq!(bytes, want);
    }
}
