use fulcrum_kernels::ops::RopeStyle;
use fulcrum_model::config::{Arch, LayerAttention, ModelConfig};

use super::*;

/// A SmolLM2-shaped config: 30 layers, 3 KV heads of 64 → 23 040 B/token.
fn model_config(context_length: usize) -> ModelConfig {
    ModelConfig {
        arch: Arch::Llama,
        num_layers: 30,
        d_model: 576,
        num_heads: 9,
        num_kv_heads: 3,
        head_dim: 64,
        ffn_dim: 1536,
        vocab_size: 49152,
        rms_eps: 1e-5,
        rope_dim: 64,
        rope_style: RopeStyle::Interleaved,
        context_length,
        attention_scale: 0.125,
        layers: vec![
            LayerAttention {
                rope_base: 10000.0,
                window: None
            };
            30
        ],
    }
}

const GIB: u64 = 1 << 30;

#[test]
fn kv_sizes_parse() {
    let cases = [
        ("4GiB", KvCacheSize::Bytes(4 * GIB)),
        ("4g", KvCacheSize::Bytes(4 * GIB)),
        ("1.5G", KvCacheSize::Bytes(3 * GIB / 2)),
        ("512MiB", KvCacheSize::Bytes(512 << 20)),
        ("800MB", KvCacheSize::Bytes(800_000_000)),
        ("1024", KvCacheSize::Bytes(1024)),
        (" 30% ", KvCacheSize::FractionOfAvailable(0.3)),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<KvCacheSize>(), Ok(expected), "{text}");
    }
    for bad in ["", "abc", "4XB", "0", "0%", "150%", "-1G", "NaN", "%"] {
        let err = bad.parse::<KvCacheSize>().unwrap_err().to_string();
        assert!(err.contains("`kv_cache_memory`"), "{bad}: {err}");
    }
}

#[test]
fn meminfo_is_read_in_kib() {
    let text = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   2000000 kB\n";
    assert_eq!(parse_mem_available(text), Some(2_048_000_000));
    assert_eq!(parse_mem_available("MemFree: 1 kB\n"), None);
}

#[test]
fn defaults_cap_the_context_and_the_kv_cache() {
    let options = EngineOptions::default();
    let config =
        EngineConfig::resolve_with_available_memory(&options, &model_config(32768), || {
            Some(64 * GIB)
        })
        .unwrap();
    assert_eq!(config.max_model_len(), DEFAULT_MAX_MODEL_LEN_CAP);
    assert_eq!(
        config.scheduler.max_batched_tokens,
        DEFAULT_MAX_BATCHED_TOKENS
    );
    // 25% of 64 GiB is 16 GiB: capped at 4 GiB.
    assert_eq!(
        config.scheduler.num_blocks,
        (DEFAULT_KV_CACHE_MAX_BYTES / (23040 * 16)) as usize
    );
    assert_eq!(config.kv_cache_bytes, config.num_kv_tokens() as u64 * 23040);
    assert_eq!(config.max_waiting, usize::MAX);
    // One sequence needs one context, whatever the memory.
    let single = EngineOptions {
        max_num_seqs: 1,
        ..EngineOptions::default()
    };
    let config = EngineConfig::resolve_with_available_memory(&single, &model_config(32768), || {
        Some(64 * GIB)
    })
    .unwrap();
    assert_eq!(config.num_kv_tokens(), DEFAULT_MAX_MODEL_LEN_CAP);

    let small =
        EngineConfig::resolve_with_available_memory(&options, &model_config(2048), || Some(GIB))
            .unwrap();
    assert_eq!(small.max_model_len(), 2048);
    assert_eq!(
        small.scheduler.num_blocks,
        (GIB / 4) as usize / (23040 * 16)
    );
    let line = small.to_string();
    assert!(
        line.contains("policy chunked") && line.contains("tokens"),
        "{line}"
    );
}

#[test]
fn the_q8_cache_holds_about_twice_the_tokens() {
    let sized = |dtype| {
        let options = EngineOptions {
            kv_cache: Some(KvCacheSize::Bytes(GIB)),
            kv_cache_dtype: dtype,
            ..EngineOptions::default()
        };
        EngineConfig::resolve_with_available_memory(&options, &model_config(2048), || None).unwrap()
    };
    let (f16, q8) = (sized(KvDtype::F16), sized(KvDtype::Q8));
    // Per token: 30 layers × 2 (K, V) × 3 heads × (64 bytes + a 4-byte scale).
    assert_eq!(q8.kv_bytes_per_token, 12240);
    assert_eq!(q8.scheduler.num_blocks, GIB as usize / (12240 * 16));
    assert!(q8.num_kv_tokens() > f16.num_kv_tokens() * 18 / 10);
    assert!(q8.to_string().contains("KV cache q8"), "{q8}");
    // Rows the layout cannot hold are refused by name.
    let mut odd = model_config(2048);
    odd.head_dim = 6;
    let options = EngineOptions {
        kv_cache_dtype: KvDtype::Q8,
        ..EngineOptions::default()
    };
    let err =
        EngineConfig::resolve_with_available_memory(&options, &odd, || Some(GIB)).unwrap_err();
    assert!(
        err.to_string()
            .contains("`kv_cache_dtype`: the q8 KV cache needs a head dimension divisible by 4"),
        "{err}"
    );
    assert_eq!("Q8".parse::<KvDtype>(), Ok(KvDtype::Q8));
    assert!("q4"
        .parse::<KvDtype>()
        .unwrap_err()
        .contains("expected f16 or q8"));
}

#[test]
fn whole_prompt_policies_get_a_budget_of_a_whole_context() {
    let options = EngineOptions {
        policy: Policy::Static,
        max_model_len: Some(4096),
        ..EngineOptions::default()
    };
    let config = EngineConfig::resolve_with_available_memory(&options, &model_config(8192), || {
        Some(64 * GIB)
    })
    .unwrap();
    assert_eq!(config.scheduler.max_batched_tokens, 4096);
}

#[test]
fn impossible_configurations_are_refused_with_the_knob_named() {
    let model = model_config(8192);
    let cases = [
        (
            EngineOptions {
                max_model_len: Some(9000),
                ..EngineOptions::default()
            },
            "`max_model_len` (9000) exceeds",
        ),
        (
            EngineOptions {
                kv_cache: Some(KvCacheSize::Tokens(1000)),
                ..EngineOptions::default()
            },
            "holds 1008 tokens, fewer than `max_model_len` (8192)",
        ),
        (
            EngineOptions {
                block_size: 0,
                ..EngineOptions::default()
            },
            "`block_size` must be in [1, 1024]",
        ),
        (
            EngineOptions {
                threads: Some(0),
                ..EngineOptions::default()
            },
            "`threads` must be at least 1",
        ),
        (
            EngineOptions {
                policy: Policy::Static,
                max_batched_tokens: Some(100),
                ..EngineOptions::default()
            },
            "`max_batched_tokens` (100) must be at least `max_model_len`",
        ),
    ];
    for (options, expected) in cases {
        let err = EngineConfig::resolve_with_available_memory(&options, &model, || Some(64 * GIB))
            .unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{err} should contain {expected:?}"
        );
    }
    let err =
        EngineConfig::resolve_with_available_memory(&EngineOptions::default(), &model, || None)
            .unwrap_err();
    assert_eq!(err, EngineConfigError::NoMemInfo);
}
