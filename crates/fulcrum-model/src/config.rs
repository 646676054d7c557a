//! Hyper-parameters of a model, read from GGUF metadata.
//!
//! Every number comes from the file (`{arch}.block_count`, …); fulcrum knows
//! only which *architectures* exist and how they differ (norm placement,
//! activation, rope style, sliding windows).

use fulcrum_gguf::{GgufError, Metadata};
use fulcrum_kernels::attention::KvDtype;
use fulcrum_kernels::ops::RopeStyle;

/// The architectures fulcrum can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama and its relatives (SmolLM2): pre-norm, SwiGLU, rope on adjacent pairs.
    Llama,
    /// Gemma 3: embeddings scaled by √d, pre- and post-norms, QK-norm, GeGLU,
    /// NeoX rope, sliding-window attention on most layers.
    Gemma3,
}

impl Arch {
    fn from_name(name: &str) -> Result<Arch, ConfigError> {
        match name {
            "llama" => Ok(Arch::Llama),
            "gemma3" => Ok(Arch::Gemma3),
            other => Err(ConfigError::UnsupportedArch(other.to_string())),
        }
    }

    fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Interleaved,
            Arch::Gemma3 => RopeStyle::Halves,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unsupported architecture `{0}` (fulcrum runs llama and gemma3)")]
    UnsupportedArch(String),
    #[error(transparent)]
    Metadata(#[from] GgufError),
    #[error("invalid hyper-parameter {key} = {value}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: &'static str,
    },
}

/// Attention flavour of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerAttention {
    pub rope_base: f32,
    /// `Some(w)`: a query at position p sees keys in `(p - w, p]`.
    pub window: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub num_layers: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub rms_eps: f32,
    /// Dimensions of each head that rotate (the rest pass through).
    pub rope_dim: usize,
    pub rope_style: RopeStyle,
    /// Training context length.
    pub context_length: usize,
    /// Multiplies q·k.
    pub attention_scale: f32,
    /// Per layer: rope base and window.
    pub layers: Vec<LayerAttention>,
}

impl ModelConfig {
    /// Reads and checks the hyper-parameters of a file's architecture.
    pub fn from_metadata(md: &Metadata) -> Result<ModelConfig, ConfigError> {
        let arch_name = md.get_str("general.architecture")?;
        let arch = Arch::from_name(arch_name)?;
        let keys = ArchKeys {
            md,
            arch: arch_name,
        };
        let dims = Dims::read(&keys)?;
        dims.validate(&keys)?;
        let layers = layer_attention(arch, &keys, dims.num_layers, dims.rope_base)?;
        Ok(ModelConfig {
            arch,
            num_layers: dims.num_layers,
            d_model: dims.d_model,
            num_heads: dims.num_heads,
            num_kv_heads: dims.num_kv_heads,
            head_dim: dims.head_dim,
            ffn_dim: dims.ffn_dim,
            vocab_size: dims.vocab_size,
            rms_eps: dims.rms_eps,
            rope_dim: dims.rope_dim,
            rope_style: arch.rope_style(),
            context_length: dims.context_length,
            attention_scale: 1.0 / (dims.head_dim as f32).sqrt(),
            layers,
        })
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Bytes of KV cache one token takes across all layers (K and V).
    pub fn kv_bytes_per_token(&self, dtype: KvDtype) -> usize {
        2 * self.num_layers * self.num_kv_heads * dtype.row_bytes(self.head_dim)
    }
}

/// Reads the keys of one architecture (`{arch}.block_count`, …).
struct ArchKeys<'a> {
    md: &'a Metadata,
    arch: &'a str,
}

impl ArchKeys<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    fn usize(&self, k: &str) -> Result<usize, GgufError> {
        self.md.get_usize(&self.key(k))
    }

    fn opt_usize(&self, k: &str) -> Result<Option<usize>, GgufError> {
        self.md.opt(&self.key(k), Metadata::get_usize)
    }

    fn opt_f32(&self, k: &str) -> Result<Option<f32>, GgufError> {
        self.md.opt(&self.key(k), Metadata::get_f32)
    }

    fn invalid(&self, k: &str, value: usize, reason: &'static str) -> ConfigError {
        ConfigError::Invalid {
            key: self.key(k),
            value: value.to_string(),
            reason,
        }
    }
}

/// The sizes every architecture states, with their defaults, before checks.
struct Dims {
    num_layers: usize,
    d_model: usize,
    num_heads: usize,
    num_kv_heads: usize,
    ffn_dim: usize,
    rms_eps: f32,
    context_length: usize,
    head_dim: usize,
    vocab_size: usize,
    rope_base: f32,
    rope_dim: usize,
}

impl Dims {
    fn read(keys: &ArchKeys) -> Result<Dims, ConfigError> {
        let num_layers = keys.usize("block_count")?;
        let d_model = keys.usize("embedding_length")?;
        let num_heads = keys.usize("attention.head_count")?;
        let num_kv_heads = keys
            .opt_usize("attention.head_count_kv")?
            .unwrap_or(num_heads);
        let ffn_dim = keys.usize("feed_forward_length")?;
        let rms_eps = keys
            .md
            .get_f32(&keys.key("attention.layer_norm_rms_epsilon"))?;
        let context_length = keys.usize("context_length")?;
        let head_dim = match keys.opt_usize("attention.key_length")? {
            Some(h) => h,
            None if num_heads > 0 => d_model / num_heads,
            None => 0,
        };
        let vocab_size = match keys.opt_usize("vocab_size")? {
            Some(v) => v,
            None => keys.md.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_base = keys.opt_f32("rope.freq_base")?.unwrap_or(10_000.0);
        let rope_dim = keys.opt_usize("rope.dimension_count")?.unwrap_or(head_dim);
        Ok(Dims {
            num_layers,
            d_model,
            num_heads,
            num_kv_heads,
            ffn_dim,
            rms_eps,
            context_length,
            head_dim,
            vocab_size,
            rope_base,
            rope_dim,
        })
    }

    /// Sizes the kernels can run (and allocate for): the first that is not
    /// is the error.
    fn validate(&self, keys: &ArchKeys) -> Result<(), ConfigError> {
        for (k, v) in [
            ("block_count", self.num_layers),
            ("embedding_length", self.d_model),
            ("attention.head_count", self.num_heads),
            ("feed_forward_length", self.ffn_dim),
        ] {
            if v == 0 || v > 1 << 20 {
                return Err(keys.invalid(k, v, "must be between 1 and 2^20"));
            }
        }
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(keys.invalid(
                "attention.head_count_kv",
                self.num_kv_heads,
                "must divide the head count",
            ));
        }
        let head_dim = self.head_dim;
        if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > 1024 {
            return Err(keys.invalid(
                "attention.key_length",
                head_dim,
                "must be even and at most 1024",
            ));
        }
        if let Some(v) = keys.opt_usize("attention.value_length")? {
            if v != head_dim {
                return Err(keys.invalid("attention.value_length", v, "must equal the key length"));
            }
        }
        let rope_dim = self.rope_dim;
        if rope_dim == 0 || rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(keys.invalid(
                "rope.dimension_count",
                rope_dim,
                "must be even and at most the head size",
            ));
        }
        if self.vocab_size == 0 {
            return Err(keys.invalid("vocab_size", self.vocab_size, "must be positive"));
        }
        let (rms_eps, rope_base) = (self.rms_eps, self.rope_base);
        if !(rms_eps.is_finite() && rms_eps >= 0.0 && rope_base.is_finite() && rope_base > 0.0) {
            return Err(ConfigError::Invalid {
                key: keys.key("rope.freq_base"),
                value: format!("{rope_base} (eps {rms_eps})"),
                reason: "must be finite and positive",
            });
        }
        Ok(())
    }
}

/// Each layer's rope base and window, as the architecture lays them out.
fn layer_attention(
    arch: Arch,
    keys: &ArchKeys,
    num_layers: usize,
    rope_base: f32,
) -> Result<Vec<LayerAttention>, ConfigError> {
    let global = LayerAttention {
        rope_base,
        window: None,
    };
    Ok(match arch {
        Arch::Llama => vec![global; num_layers],
        Arch::Gemma3 => {
            // Five local (sliding-window, rope base 10 000) layers, then one
            // global layer with the file's rope base: layer i is global when
            // (i + 1) % 6 == 0.
            let window = keys.opt_usize("attention.sliding_window")?;
            (0..num_layers)
                .map(|i| {
                    if (i + 1) % 6 == 0 || window.is_none() {
                        global
                    } else {
                        LayerAttention {
                            rope_base: 10_000.0,
                            window,
                        }
                    }
                })
                .collect()
        }
    })
}
