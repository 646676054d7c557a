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
    pub fn from_metadata(md: &Metadata) -> Result<ModelConfig, ConfigError> {
        let arch_name = md.get_str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            other => return Err(ConfigError::UnsupportedArch(other.to_string())),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let num_layers = md.get_usize(&key("block_count"))?;
        let d_model = md.get_usize(&key("embedding_length"))?;
        let num_heads = md.get_usize(&key("attention.head_count"))?;
        let num_kv_heads = md
            .opt(&key("attention.head_count_kv"), Metadata::get_usize)?
            .unwrap_or(num_heads);
        let ffn_dim = md.get_usize(&key("feed_forward_length"))?;
        let rms_eps = md.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        let context_length = md.get_usize(&key("context_length"))?;
        let head_dim = match md.opt(&key("attention.key_length"), Metadata::get_usize)? {
            Some(h) => h,
            None if num_heads > 0 => d_model / num_heads,
            None => 0,
        };
        let vocab_size = match md.opt(&key("vocab_size"), Metadata::get_usize)? {
            Some(v) => v,
            None => md.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_base = md
            .opt(&key("rope.freq_base"), Metadata::get_f32)?
            .unwrap_or(10_000.0);
        let rope_dim = md
            .opt(&key("rope.dimension_count"), Metadata::get_usize)?
            .unwrap_or(head_dim);

        let invalid = |k: &str, v: usize, reason| ConfigError::Invalid {
            key: key(k),
            value: v.to_string(),
            reason,
        };
        for (k, v) in [
            ("block_count", num_layers),
            ("embedding_length", d_model),
            ("attention.head_count", num_heads),
            ("feed_forward_length", ffn_dim),
        ] {
            if v == 0 || v > 1 << 20 {
                return Err(invalid(k, v, "must be between 1 and 2^20"));
            }
        }
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(invalid(
                "attention.head_count_kv",
                num_kv_heads,
                "must divide the head count",
            ));
        }
        if head_dim == 0 || head_dim % 2 != 0 || head_dim > 1024 {
            return Err(invalid(
                "attention.key_length",
                head_dim,
                "must be even and at most 1024",
            ));
        }
        if let Some(v) = md.opt(&key("attention.value_length"), Metadata::get_usize)? {
            if v != head_dim {
                return Err(invalid(
                    "attention.value_length",
                    v,
                    "must equal the key length",
                ));
            }
        }
        if rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(invalid(
                "rope.dimension_count",
                rope_dim,
                "must be even and at most the head size",
            ));
        }
        if vocab_size == 0 {
            return Err(invalid("vocab_size", vocab_size, "must be positive"));
        }
        if !(rms_eps.is_finite() && rms_eps >= 0.0 && rope_base.is_finite() && rope_base > 0.0) {
            return Err(ConfigError::Invalid {
                key: key("rope.freq_base"),
                value: format!("{rope_base} (eps {rms_eps})"),
                reason: "must be finite and positive",
            });
        }

        let (rope_style, attention_scale, layers) = match arch {
            Arch::Llama => {
                let layer = LayerAttention {
                    rope_base,
                    window: None,
                };
                (
                    RopeStyle::Interleaved,
                    1.0 / (head_dim as f32).sqrt(),
                    vec![layer; num_layers],
                )
            }
            Arch::Gemma3 => {
                // Five local (sliding-window, rope base 10 000) layers, then one
                // global layer with the file's rope base: layer i is global when
                // (i + 1) % 6 == 0.
                let window = md.opt(&key("attention.sliding_window"), Metadata::get_usize)?;
                let layers = (0..num_layers)
                    .map(|i| {
                        if (i + 1) % 6 == 0 || window.is_none() {
                            LayerAttention {
                                rope_base,
                                window: None,
                            }
                        } else {
                            LayerAttention {
                                rope_base: 10_000.0,
                                window,
                            }
                        }
                    })
                    .collect();
                (RopeStyle::Halves, 1.0 / (head_dim as f32).sqrt(), layers)
            }
        };

        Ok(ModelConfig {
            arch,
            num_layers,
            d_model,
            num_heads,
            num_kv_heads,
            head_dim,
            ffn_dim,
            vocab_size,
            rms_eps,
            rope_dim,
            rope_style,
            context_length,
            attention_scale,
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
